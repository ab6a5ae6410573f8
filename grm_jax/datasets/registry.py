"""The one registry of dataset names: one row per name holding every fact about it (which root
folder it reads, training set or benchmark, official division threshold, scoring convention,
shipped sequence table) and the function that reads it. Training, evaluation, scoring and packing
all resolve names here, so a name means exactly one thing everywhere; no other module keeps a
table keyed by dataset names (tests/test_registry.py checks).

Root folders are set per download, not per name: ``--config.data.roots.<root>=PATH`` where
``<root>`` is one of :data:`ROOT_KEYS` (e.g. ``got10k`` serves got10k_train_full,
got10k_vot_train, got10k_train_all, got10k_val and got10k_test).

Division thresholds are those of the official per-benchmark test settings for the released
ViT-B 256 models: a search token joins E_A when P(E_S) < threshold; 0 means argmax.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Callable, Iterable

from grm_jax.datasets import avist, lasot
from grm_jax.datasets.coco import CocoSource
from grm_jax.datasets.folder import load_folder, load_tnl2k
from grm_jax.datasets.got10k import Got10kSource, load_got10k
from grm_jax.datasets.sample import SampleSource, load_sample_val
from grm_jax.datasets.sequence import Sequence
from grm_jax.datasets.source import Source
from grm_jax.datasets.table_layouts import load_table_benchmark
from grm_jax.datasets.trackingnet import TrackingNetSource, load_trackingnet
from grm_jax.errors import ConfigError

__all__ = ["DatasetSpec", "DATASETS", "ROOT_KEYS", "SERVER_SCORING", "resolve", "names", "official_threshold"]

TRAIN, EVAL = "train", "eval"
SERVER_SCORING = ("got10k_server", "trackingnet_server")

TrainingReader = Callable[[str], Source]  # reader(root) -> Source
BenchmarkLoader = Callable[[str, Iterable[str] | None], list[Sequence]]  # loader(root, sequences)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """name: canonical name; root: the ``data.roots`` field holding its folder; use: 'train'
    (pair sampling) or 'eval' (benchmark sequences); about: one line for help texts;
    threshold: official division threshold (eval only); aliases: other accepted spellings;
    scoring (eval only): 'pytracking' (success / precision), 'got10k' (those plus AO / SR), or
    :data:`SERVER_SCORING` 'got10k_server' / 'trackingnet_server' (ground truth not public: the
    results are zipped in that server's submission format);
    denominator (eval only): the frames a sequence's success / precision rates are divided by,
    'valid' (frames with a known, visible target: GRM's and OSTrack's analysis), 'all' (every
    frame) or 'lasot_protocol' (the run's ``eval.lasot_protocol`` decides);
    read (train only): ``read(root) -> Source``, the training reader;
    load (eval only): ``load(root, sequences=None) -> list[Sequence]``, the benchmark loader;
    table (eval only): the shipped table (``tables/<file>``) listing the benchmark's sequences,
    None when its folders list their own sequences."""

    name: str
    root: str
    use: str
    about: str
    threshold: float = 0.0
    aliases: tuple[str, ...] = ()
    scoring: str = "pytracking"
    denominator: str = "valid"
    read: TrainingReader | None = dataclasses.field(default=None, compare=False, repr=False)
    load: BenchmarkLoader | None = dataclasses.field(default=None, compare=False, repr=False)
    table: str | None = None


def _train(name: str, root: str, about: str, read: TrainingReader, aliases: tuple[str, ...] = ()) -> DatasetSpec:
    return DatasetSpec(name, root, TRAIN, about, aliases=aliases, read=read)


def _got10k(split: str) -> BenchmarkLoader:
    def load(root, sequences=None):
        return load_got10k(root, split, sequences)
    return load


def _table_layout(name: str, about: str, threshold: float = 0.0, aliases: tuple[str, ...] = ()) -> DatasetSpec:
    """A benchmark read through its shipped table ``tables/<name>.json`` (:mod:`.table_layouts`)."""
    table = f"{name}.json"
    return DatasetSpec(name, name, EVAL, about, threshold, aliases, table=table,
                       load=functools.partial(load_table_benchmark, table, name))


_SPECS = (
    # training sets
    _train("got10k_train_full", "got10k", "GOT-10k train, all sequences (GRM-GOT)",
           functools.partial(Got10kSource, split="train_full"), aliases=("got10k_train",)),
    _train("got10k_vot_train", "got10k", "GOT-10k train without the VOT-overlapping sequences",
           functools.partial(Got10kSource, split="vot_train"), aliases=("got10k_vottrain",)),
    _train("got10k_train_all", "got10k", "every sequence of a GOT-10k-layout train/list.txt",
           functools.partial(Got10kSource, split="all", name="got10k_train_all")),
    _train("lasot_train", "lasot", "LaSOT training split (1120 sequences)", lasot.LasotSource),
    _train("trackingnet_train", "trackingnet", "TrackingNet TRAIN_0..TRAIN_11 (chunks present)", TrackingNetSource),
    _train("coco_train", "coco", "COCO 2017 train, one still 'sequence' per object", CocoSource,
           aliases=("coco2017",)),
    _train("sample_train", "sample", "the generated sample dataset, train split", SampleSource,
           aliases=("sample",)),
    # benchmarks
    DatasetSpec("got10k_val", "got10k", EVAL, "GOT-10k validation (180 sequences)", scoring="got10k",
                load=_got10k("val")),
    DatasetSpec("got10k_test", "got10k", EVAL, "GOT-10k test (server-scored)", scoring="got10k_server",
                load=_got10k("test")),
    DatasetSpec("lasot", "lasot", EVAL, "LaSOT test (280 sequences)", 0.4, aliases=("lasot_test",),
                denominator="lasot_protocol", load=lasot.load_lasot, table=lasot.TEST_TABLE),
    DatasetSpec("trackingnet", "trackingnet", EVAL, "TrackingNet test (server-scored)",
                aliases=("trackingnet_test",), scoring="trackingnet_server", load=load_trackingnet),
    _table_layout("uav123", "UAV123", 0.55, aliases=("uav",)),
    _table_layout("nfs", "Need for Speed, 30 fps", 0.6, aliases=("nfs30",)),
    DatasetSpec("avist", "avist", EVAL, "AVisT", 0.4, denominator="all", load=avist.load_avist, table=avist.TABLE),
    _table_layout("otb100", "OTB-100"),
    DatasetSpec("tnl2k", "tnl2k", EVAL, "TNL2K test", load=load_tnl2k),
    DatasetSpec("folder", "folder", EVAL, "any folder of <seq>/ frames + groundtruth.txt", load=load_folder),
    DatasetSpec("sample_val", "sample", EVAL, "the generated sample dataset, validation split",
                scoring="got10k", load=load_sample_val),
)

# Views of _SPECS (derived, not tables of their own): by canonical name, by any spelling.
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in _SPECS}
_BY_SPELLING = {**{s.name: s for s in _SPECS}, **{a: s for s in _SPECS for a in s.aliases}}
# Every root folder a config may set, in a stable order.
ROOT_KEYS: tuple[str, ...] = tuple(dict.fromkeys(s.root for s in _SPECS))


def names(use: str | None = None) -> list[str]:
    """Canonical names, optionally only those for ``use`` ('train' or 'eval')."""
    return [s.name for s in _SPECS if use is None or s.use == use]


def resolve(name: str, use: str | None = None, where: str = "dataset") -> DatasetSpec:
    """The spec of ``name`` (case-insensitive; aliases allowed).

    ConfigError names the value, the closest valid names and, for a benchmark name given to
    training (or the reverse), the name to use instead. ``where`` says which setting held it.
    """
    key = str(name).strip().lower()
    spec = _BY_SPELLING.get(key)
    valid = names(use)
    if spec is None:
        spellings = [k for k, s in _BY_SPELLING.items() if use is None or s.use == use]
        close = list(dict.fromkeys(_BY_SPELLING[k].name for k in difflib.get_close_matches(key, spellings, n=4,
                                                                                            cutoff=0.5)))
        raise ConfigError(f"{where}: unknown dataset {name!r}; valid names: {', '.join(valid)}",
                          hint=f"did you mean {' or '.join(close)}?" if close else None)
    if use is not None and spec.use != use:
        same_root = [n for n in valid if DATASETS[n].root == spec.root]
        kind = {TRAIN: "training set", EVAL: "benchmark"}
        raise ConfigError(f"{where}={name!r} is a {kind[spec.use]}, not a {kind[use]}",
                          hint=f"use {' or '.join(same_root)}" if same_root else f"valid: {', '.join(valid)}")
    return spec


def official_threshold(name: str) -> float:
    """The official division threshold of benchmark ``name`` (0.0 = argmax)."""
    return resolve(name, EVAL).threshold
