"""The two entry points every caller uses, keyed by the registry's names.

* :func:`load_benchmark` ``(name, root, sequences=None) -> list[Sequence]``: evaluation;
  :func:`load_present` also accepts a root that holds only some of the sequences (scoring).
* :func:`training_source` ``(name, root) -> Source``: training (pair sampling, packing). A root
  holding a packed dataset gives the packed reader.

:func:`dataset_root` finds a name's folder in a ``data.roots`` mapping (the generated sample
data has a default cache folder); :func:`benchmark_sequence_names` lists the shipped tables.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterable, Mapping

from grm_jax.datasets.avist import TABLE as AVIST_TABLE, load_avist
from grm_jax.datasets.coco import CocoSource
from grm_jax.datasets.files import MissingSequenceError, read_table
from grm_jax.datasets.folder import load_folder, load_tnl2k
from grm_jax.datasets.got10k import Got10kSource, load_got10k
from grm_jax.datasets.lasot import TEST_TABLE as LASOT_TABLE, LasotSource, load_lasot
from grm_jax.datasets.packed import PackedSource, is_packed
from grm_jax.datasets.registry import EVAL, TRAIN, resolve
from grm_jax.datasets.sample import DEFAULT_SAMPLE_ROOT, SampleSource, load_sample_val
from grm_jax.datasets.sequence import Sequence
from grm_jax.datasets.source import Source
from grm_jax.datasets.table_layouts import TABLE_BENCHMARKS, load_table_benchmark, table_sequence_names
from grm_jax.datasets.trackingnet import TrackingNetSource, load_trackingnet
from grm_jax.errors import ConfigError, DataError, MissingFileError

__all__ = ["load_benchmark", "load_present", "training_source", "dataset_root", "benchmark_sequence_names",
           "BENCHMARK_LOADERS", "TRAINING_READERS"]

# registry name -> loader(root, sequences) -> list[Sequence]
BENCHMARK_LOADERS: dict[str, Callable[[Any, Iterable[str] | None], list[Sequence]]] = {
    "got10k_val": lambda root, sequences: load_got10k(root, "val", sequences),
    "got10k_test": lambda root, sequences: load_got10k(root, "test", sequences),
    "lasot": load_lasot,
    "trackingnet": load_trackingnet,
    **{name: functools.partial(load_table_benchmark, name) for name in TABLE_BENCHMARKS},
    "avist": load_avist,
    "tnl2k": load_tnl2k,
    "folder": load_folder,
    "sample_val": load_sample_val,
}

# registry name -> reader(root) -> Source
TRAINING_READERS: dict[str, Callable[[Any], Source]] = {
    "got10k_train_full": functools.partial(Got10kSource, split="train_full"),
    "got10k_vot_train": functools.partial(Got10kSource, split="vot_train"),
    "got10k_train_all": functools.partial(Got10kSource, split="all", name="got10k_train_all"),
    "lasot_train": LasotSource,
    "trackingnet_train": TrackingNetSource,
    "coco_train": CocoSource,
    "sample_train": SampleSource,
}


def _get(node, key: str):
    """``node[key]`` for dicts / ConfigDicts, ``node.key`` for objects; None when absent."""
    if node is None:
        return None
    if isinstance(node, Mapping) or hasattr(node, "keys"):
        try:
            return node[key]
        except (KeyError, AttributeError):
            return None
    return getattr(node, key, None)


def dataset_root(name: str, roots: Mapping[str, Any] | None) -> str | None:
    """The folder of dataset ``name``: ``roots[<its root key>]`` (the registry's
    DatasetSpec.root); for the generated sample data, :data:`DEFAULT_SAMPLE_ROOT` when unset.
    None when the root is not set."""
    spec = resolve(name)
    root = _get(roots, spec.root)
    if root is None and spec.root == "sample":
        root = DEFAULT_SAMPLE_ROOT
    return None if root is None else os.fspath(root)


def _missing_root(spec) -> ConfigError:
    return ConfigError(f"dataset {spec.name!r} needs config.data.roots.{spec.root} (a folder), which is not set",
                       hint=f"--config.data.roots.{spec.root}=/path/to/{spec.root}")


def load_benchmark(name: str, root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """The sequences of benchmark ``name`` (registry name or alias) read from ``root``.

    sequences: optional subset of sequence names (returned in that order); unknown names raise.
    root None is allowed for the generated sample data (its default cache folder).
    Raises ConfigError for an unknown name, MissingFileError for a missing root, sequence folder
    or frame, DataError for malformed files and ground truth whose row count differs from the frames.
    """
    spec = resolve(name, EVAL, where="benchmark")
    if root is None:
        if spec.root != "sample":
            raise _missing_root(spec)
        root = DEFAULT_SAMPLE_ROOT
    elif spec.root != "sample" and not os.path.isdir(root):
        raise MissingFileError(f"benchmark {spec.name!r}: root folder does not exist: {os.fspath(root)}")
    return BENCHMARK_LOADERS[spec.name](root, sequences)


def load_present(name: str, root, sequences: Iterable[str] | None = None) -> tuple[list[Sequence], list[str]]:
    """(sequences, names of the benchmark's sequences whose folder is not in ``root``).

    With ``sequences``, exactly those (as :func:`load_benchmark`: a missing one is an error). Without,
    the benchmark's sequences present in ``root``: for benchmarks with a shipped sequence table
    (:func:`benchmark_sequence_names`) a sequence folder that is absent is skipped and listed;
    anything else wrong with a sequence that is there (a missing frame or label file) still
    raises. Benchmarks that list their own sequences on disk have none missing."""
    names = benchmark_sequence_names(name)
    if sequences is not None or names is None:
        return load_benchmark(name, root, sequences), []
    present, missing = [], []
    for seq in names:
        try:
            present.extend(load_benchmark(name, root, [seq]))
        except MissingSequenceError:
            missing.append(seq)
    return present, missing


def _packed(spec, root) -> PackedSource:
    src = PackedSource(root)
    try:
        held = resolve(src.name).name
    except ConfigError:
        held = src.name
    if held != spec.name:
        raise DataError(f"packed dataset at {os.fspath(root)} holds {src.name!r}, but {spec.name!r} was requested",
                        hint=f"pack {spec.name} with: python -m data_pipelines.pack --dataset {spec.name} ...")
    return src


def training_source(name: str, root) -> Source:
    """The training reader of dataset ``name`` (registry name or alias) at ``root``; a root
    holding a packed dataset gives the packed reader (which must hold the same dataset).
    root None is allowed for the generated sample data (its default cache folder)."""
    spec = resolve(name, TRAIN, where="training dataset")
    if root is None:
        if spec.root != "sample":
            raise _missing_root(spec)
        root = DEFAULT_SAMPLE_ROOT
    if is_packed(root):
        return _packed(spec, root)
    return TRAINING_READERS[spec.name](root)


def benchmark_sequence_names(name: str) -> list[str] | None:
    """Sequence names from the shipped tables (lasot, avist, uav123, nfs, otb100); None for
    benchmarks whose folders list their own sequences."""
    spec = resolve(name, EVAL, where="benchmark")
    if spec.name == "lasot":
        return list(read_table(LASOT_TABLE))
    if spec.name == "avist":
        return list(read_table(AVIST_TABLE))
    if spec.name in TABLE_BENCHMARKS:
        return table_sequence_names(spec.name)
    return None
