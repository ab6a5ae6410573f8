"""The entry points every caller uses, keyed by the registry's names.

* :func:`load_benchmark` ``(name, root, sequences=None) -> list[Sequence]``: evaluation;
  :func:`load_present` also accepts a root that holds only some of the sequences (scoring).
* :func:`training_source` ``(name, root) -> Source``: training (pair sampling, packing). A root
  holding a packed dataset gives the packed reader.
* :func:`dataset_root` ``(name, roots)``: THE dataset-root function: a name's folder in a
  ``data.roots`` mapping (the generated sample data has a default cache folder);
  :func:`require_dataset_root` is the same or the one error for an unset root.

Each reads the registry row (:class:`~grm_jax.datasets.registry.DatasetSpec`: root key, reader,
loader, sequence table); :func:`benchmark_sequence_names` lists a row's shipped table.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from grm_jax.datasets.files import MissingSequenceError, table_sequence_names
from grm_jax.datasets.packed import PackedSource, is_packed
from grm_jax.datasets.registry import EVAL, TRAIN, resolve
from grm_jax.datasets.roots import DATA_ROOT_ENV, local_file
from grm_jax.datasets.sample import DEFAULT_SAMPLE_ROOT
from grm_jax.datasets.sequence import Sequence
from grm_jax.datasets.source import Source
from grm_jax.errors import ConfigError, DataError, MissingFileError

__all__ = ["load_benchmark", "load_present", "training_source", "dataset_root", "require_dataset_root",
           "benchmark_sequence_names"]


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


def dataset_root(name: str, roots: Mapping[str, Any] | None, default: str | None = None) -> str | None:
    """The folder of dataset ``name``: ``roots[<its root key>]`` (the registry's
    DatasetSpec.root). When that is not set: ``default`` if given, else for the generated sample
    data :data:`DEFAULT_SAMPLE_ROOT`, else None. ``roots`` is ``run.data.roots``, already filled
    from the command line, the run config file, the user file and ``GRM_DATA_ROOT`` in that order
    (:mod:`grm_jax.datasets.roots`)."""
    spec = resolve(name)
    root = _get(roots, spec.root)
    if root is None:
        root = default if default is not None or spec.root != "sample" else DEFAULT_SAMPLE_ROOT
    return None if root is None else os.fspath(root)


def require_dataset_root(name: str, roots: Mapping[str, Any] | None, also: str | None = None) -> str:
    """:func:`dataset_root`, or THE error for an unset root: a ConfigError naming the dataset and
    its ``config.data.roots`` key, with a hint listing the ways to set it (``also``: one more way,
    appended to the hint)."""
    root = dataset_root(name, roots)
    if root is not None:
        return root
    spec = resolve(name)
    ways = (f"--config.data.roots.{spec.root}=/path/to/{spec.root}, \"{spec.root}\" in {local_file()} or "
            f"${DATA_ROOT_ENV}/{spec.root} (grm-jax --mode=datasets lists the roots)")
    raise ConfigError(f"dataset {spec.name!r} needs config.data.roots.{spec.root} (a folder), which is not set",
                      hint=f"{ways}; {also}" if also else ways)


def load_benchmark(name: str, root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """The sequences of benchmark ``name`` (registry name or alias) read from ``root``.

    sequences: optional subset of sequence names (returned in that order); unknown names raise.
    root None is allowed for the generated sample data (its default cache folder).
    Raises ConfigError for an unknown name, MissingFileError for a missing root, sequence folder
    or frame, DataError for malformed files and ground truth whose row count differs from the frames.
    """
    spec = resolve(name, EVAL, where="benchmark")
    if root is None:
        root = require_dataset_root(spec.name, None)
    elif spec.root != "sample" and not os.path.isdir(root):
        raise MissingFileError(f"benchmark {spec.name!r}: root folder does not exist: {os.fspath(root)}")
    return spec.load(root, sequences)


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
        root = require_dataset_root(spec.name, None)
    if is_packed(root):
        return _packed(spec, root)
    return spec.read(root)


def benchmark_sequence_names(name: str) -> list[str] | None:
    """Sequence names from the benchmark's shipped table (``DatasetSpec.table``: lasot, avist,
    uav123, nfs, otb100); None for benchmarks whose folders list their own sequences."""
    spec = resolve(name, EVAL, where="benchmark")
    return None if spec.table is None else table_sequence_names(spec.table)
