"""The one registry of dataset names: what each name means, which root folder it reads, and
its official division threshold. Training, evaluation, scoring and packing all resolve names
here, so a name means exactly one thing everywhere.

Root folders are set per download, not per name: ``--config.data.roots.<root>=PATH`` where
``<root>`` is one of :data:`ROOT_KEYS` (e.g. ``got10k`` serves got10k_train_full,
got10k_vot_train, got10k_train_all, got10k_val and got10k_test).

Division thresholds are those of the official per-benchmark test settings for the released
ViT-B 256 models: a search token joins E_A when P(E_S) < threshold; 0 means argmax.
"""
from __future__ import annotations

import dataclasses
import difflib

from grm_jax.errors import ConfigError

__all__ = ["DatasetSpec", "DATASETS", "ROOT_KEYS", "resolve", "names", "official_threshold"]

TRAIN, EVAL = "train", "eval"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """name: canonical name; root: the ``data.roots`` field holding its folder; use: 'train'
    (pair sampling) or 'eval' (benchmark sequences); threshold: official division threshold
    (eval only); aliases: other accepted spellings; about: one line for help texts;
    scoring (eval only): 'pytracking' (success / precision), 'got10k' (those plus AO / SR) or
    'server' (ground truth not public: results are submitted to the benchmark's server)."""

    name: str
    root: str
    use: str
    about: str
    threshold: float = 0.0
    aliases: tuple[str, ...] = ()
    scoring: str = "pytracking"


_SPECS = (
    # training sets
    DatasetSpec("got10k_train_full", "got10k", TRAIN, "GOT-10k train, all sequences (GRM-GOT)",
                aliases=("got10k_train",)),
    DatasetSpec("got10k_vot_train", "got10k", TRAIN, "GOT-10k train without the VOT-overlapping sequences",
                aliases=("got10k_vottrain",)),
    DatasetSpec("got10k_train_all", "got10k", TRAIN, "every sequence of a GOT-10k-layout train/list.txt"),
    DatasetSpec("lasot_train", "lasot", TRAIN, "LaSOT training split (1120 sequences)"),
    DatasetSpec("trackingnet_train", "trackingnet", TRAIN, "TrackingNet TRAIN_0..TRAIN_11 (chunks present)"),
    DatasetSpec("coco_train", "coco", TRAIN, "COCO 2017 train, one still 'sequence' per object",
                aliases=("coco2017",)),
    DatasetSpec("sample_train", "sample", TRAIN, "the generated sample dataset, train split",
                aliases=("sample",)),
    # benchmarks
    DatasetSpec("got10k_val", "got10k", EVAL, "GOT-10k validation (180 sequences)", scoring="got10k"),
    DatasetSpec("got10k_test", "got10k", EVAL, "GOT-10k test (server-scored)", scoring="server"),
    DatasetSpec("lasot", "lasot", EVAL, "LaSOT test (280 sequences)", 0.4, aliases=("lasot_test",)),
    DatasetSpec("trackingnet", "trackingnet", EVAL, "TrackingNet test (server-scored)",
                aliases=("trackingnet_test",), scoring="server"),
    DatasetSpec("uav123", "uav123", EVAL, "UAV123", 0.55, aliases=("uav",)),
    DatasetSpec("nfs", "nfs", EVAL, "Need for Speed, 30 fps", 0.6, aliases=("nfs30",)),
    DatasetSpec("avist", "avist", EVAL, "AVisT", 0.4),
    DatasetSpec("otb100", "otb100", EVAL, "OTB-100"),
    DatasetSpec("tnl2k", "tnl2k", EVAL, "TNL2K test"),
    DatasetSpec("folder", "folder", EVAL, "any folder of <seq>/ frames + groundtruth.txt"),
    DatasetSpec("sample_val", "sample", EVAL, "the generated sample dataset, validation split",
                scoring="got10k"),
)

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
