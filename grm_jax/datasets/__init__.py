"""Datasets: the registry of names and one reader per dataset layout, for training and evaluation.

Entry points (names are the registry's, see :mod:`grm_jax.datasets.registry`):

    load_benchmark(name, root, sequences=None) -> list[Sequence]     evaluation
    load_present(name, root, sequences=None) -> (sequences, missing) scoring a root with some sequences
    training_source(name, root) -> Source                            training / packing
    dataset_root(name, config.data.roots) -> folder or None          the one dataset-root function
    require_dataset_root(name, config.data.roots) -> folder          ... or the one unset-root error

One module per layout: got10k (also the generated sample data, :mod:`.sample`; its generator is
:mod:`.sample_generator`), lasot, trackingnet, coco, table_layouts (uav123, nfs, otb100), avist,
folder (tnl2k and plain folders), packed (ArrayRecord packs). Missing files raise
``grm_jax.errors.MissingFileError``, malformed ones ``grm_jax.errors.DataError``, naming the file
(and line).
"""
from grm_jax.datasets.loaders import (benchmark_sequence_names, dataset_root, load_benchmark, load_present,
                                      require_dataset_root, training_source)
from grm_jax.datasets.packed import PACK_META, PackedSource, is_packed
from grm_jax.datasets.registry import DATASETS, ROOT_KEYS, DatasetSpec, names, official_threshold, resolve
from grm_jax.datasets.sample import DEFAULT_SAMPLE_ROOT
from grm_jax.datasets.sequence import Sequence
from grm_jax.datasets.source import CorruptImageError, SequenceInfo, Source, decode_image, make_info

__all__ = ["DATASETS", "ROOT_KEYS", "DatasetSpec", "names", "official_threshold", "resolve",
           "load_benchmark", "load_present", "training_source", "dataset_root", "require_dataset_root",
           "benchmark_sequence_names",
           "Sequence", "Source", "SequenceInfo", "CorruptImageError", "decode_image", "make_info",
           "PackedSource", "PACK_META", "is_packed", "DEFAULT_SAMPLE_ROOT"]
