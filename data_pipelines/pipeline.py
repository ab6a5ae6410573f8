"""grain input pipeline of training pairs.

Stream layout. Samples have a *global index* g; sample g is made from
``np.random.default_rng([seed, g])`` only (sampler + processing), so it does not depend on the
worker layout or the access order. With global batch G = batch_size * shard_count, host
``shard_index`` reads, for its local batch j, the samples
``g = j * G + shard_index * batch_size + b`` (b < batch_size): the global batch j is the same set of
samples whatever the number of hosts, and hosts never share a sample.

Pipeline: ``MapDataset.range -> map(index -> sample) -> batch(drop_remainder) -> to_iter_dataset
(threads) -> mp_prefetch(worker processes)``. The iterator's ``get_state()`` / ``set_state()``
(grain checkpointing) resume the same stream.

Batches are dicts of numpy arrays:
  template (B, T, T, 3) f32, search (B, S, S, 3) f32 (normalized NHWC),
  template_box / search_box (B, 4) f32 normalized (x1, y1, w, h) in the crop,
  template_att (B, T, T) / search_att (B, S, S) bool (True = padding),
  heatmap (B, S/stride, S/stride) f32, dataset (B,) int32 (index into ``config.datasets``),
  index (B,) int64 (global sample index), skipped_images (B,) int32 (unreadable images skipped
  while making each sample).
"""
from __future__ import annotations

import os
from typing import Any

import grain
import ml_collections
import numpy as np

from data_pipelines.processing import CropSpec, PairProcessor, make_training_sample
from data_pipelines.sampler import PairSampler
from data_pipelines.sources import PACK_META, Source, canonical_name, make_source, root_key

__all__ = ["default_data_config", "build_sources", "PairMaker", "make_train_dataset", "make_train_iterator",
           "DEFAULT_SAMPLE_DIR"]

DEFAULT_SAMPLE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "grm_jax", "sample_dataset")
_UNBOUNDED_SAMPLES = 1 << 40


def default_data_config() -> ml_collections.ConfigDict:
    """The ``config.data`` fields this module reads, with GRM (ViT-B, 256) defaults."""
    c = ml_collections.ConfigDict()
    c.roots = ml_collections.ConfigDict({"got10k": None, "lasot": None, "trackingnet": None, "coco": None})
    c.roots.lock()
    c.datasets = ["lasot", "got10k_vot_train", "coco", "trackingnet"]
    c.ratios = [1.0, 1.0, 1.0, 1.0]
    c.samples_per_epoch = 60000
    c.max_gap = 200
    c.template = ml_collections.ConfigDict({"factor": 2.0, "size": 128, "center_jitter": 0.0, "scale_jitter": 0.0})
    c.search = ml_collections.ConfigDict({"factor": 4.0, "size": 256, "center_jitter": 3.0, "scale_jitter": 0.25})
    c.stride = 16
    c.num_workers = 8
    c.num_threads = 2
    c.sample_dir = ml_collections.FieldReference(None, field_type=str)
    c.packed_dir = ml_collections.FieldReference(None, field_type=str)
    return c


def _data_cfg(config) -> Any:
    """Accept the whole config (with ``.data``) or ``config.data`` itself."""
    if isinstance(config, (ml_collections.ConfigDict, dict)) and "data" in config and "datasets" not in config:
        return config["data"]
    return config


def _get(cfg, key, default=None):
    try:
        v = cfg[key]
    except (KeyError, AttributeError):
        return default
    return default if v is None else v


def _crop_spec(c) -> CropSpec:
    return CropSpec(factor=float(c["factor"]), size=int(c["size"]), center_jitter=float(c["center_jitter"]),
                    scale_jitter=float(c["scale_jitter"]))


def build_sources(config) -> tuple[list[Source], list[float]]:
    """Readers for ``config.datasets``.

    Root of dataset ``name``: ``<config.packed_dir>/<canonical name>`` when that folder holds a packed
    dataset (e.g. ``packed_dir/got10k_vot_train``, ``packed_dir/lasot``), else
    ``config.roots.<got10k|lasot|trackingnet|coco>``, or ``config.sample_dir`` for 'sample'.
    A root that is itself a packed folder is read with the packed reader too.
    """
    cfg = _data_cfg(config)
    names = list(cfg["datasets"])
    ratios = _get(cfg, "ratios", [1.0] * len(names))
    ratios = [float(r) for r in ratios]
    if len(ratios) != len(names):
        raise ValueError(f"config.data.ratios has {len(ratios)} entries but datasets has {len(names)}: {names}")
    roots = _get(cfg, "roots", {})
    packed_dir = _get(cfg, "packed_dir")
    sources = []
    for n in names:
        cn = canonical_name(n)
        packed = os.path.join(packed_dir, cn) if packed_dir else None
        if packed and os.path.isfile(os.path.join(packed, PACK_META)):
            root = packed
        elif cn == "sample":
            root = _get(cfg, "sample_dir", DEFAULT_SAMPLE_DIR)
        else:
            key = root_key(cn)
            root = _get(roots, key)
            if root is None:
                raise ValueError(f"dataset {n!r} needs config.data.roots.{key} (a folder), which is not set")
        sources.append(make_source(n, root))
    return sources, ratios


class PairMaker:
    """Picklable ``global index -> training sample`` map (sampler + processing)."""

    def __init__(self, sources, ratios, template: CropSpec, search: CropSpec, max_gap: int, seed: int,
                 stride: int = 16):
        self.sampler = PairSampler(sources, ratios, max_gap=max_gap)
        self.processor = PairProcessor(template, search, stride=stride)
        self.seed = int(seed)

    @classmethod
    def from_config(cls, config, seed: int) -> "PairMaker":
        cfg = _data_cfg(config)
        sources, ratios = build_sources(cfg)
        return cls(sources, ratios, _crop_spec(cfg["template"]), _crop_spec(cfg["search"]),
                   int(_get(cfg, "max_gap", 200)), seed, int(_get(cfg, "stride", 16)))

    def __call__(self, index) -> dict[str, np.ndarray]:
        index = int(index)
        rng = np.random.default_rng([self.seed, index])
        sample = make_training_sample(self.sampler, self.processor, rng)
        sample["index"] = np.int64(index)
        return sample


class _LocalToGlobal:
    def __init__(self, batch_size: int, shard_index: int, shard_count: int):
        self.b = int(batch_size)
        self.h = int(shard_index)
        self.n = int(shard_count)

    def __call__(self, i):
        j, b = divmod(int(i), self.b)
        return j * self.b * self.n + self.h * self.b + b


def make_train_dataset(config, batch_size: int, seed: int, shard_index: int = 0, shard_count: int = 1,
                       num_epochs: int | None = None, pair_maker: PairMaker | None = None) -> grain.MapDataset:
    """MapDataset of batches for this shard (see module doc). num_epochs None = unbounded stream;
    otherwise ``num_epochs * samples_per_epoch`` global samples, rounded down to whole global batches."""
    cfg = _data_cfg(config)
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} must be in [0, shard_count={shard_count})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    maker = pair_maker if pair_maker is not None else PairMaker.from_config(cfg, seed)
    global_batch = batch_size * shard_count
    if num_epochs is None:
        total = _UNBOUNDED_SAMPLES
    else:
        total = int(num_epochs) * int(_get(cfg, "samples_per_epoch", 60000))
    num_batches = total // global_batch
    ds = grain.MapDataset.range(num_batches * batch_size)
    ds = ds.map(_LocalToGlobal(batch_size, shard_index, shard_count)).map(maker)
    return ds.batch(batch_size, drop_remainder=True)


def make_train_iterator(config, batch_size: int, seed: int, shard_index: int = 0, shard_count: int = 1,
                        num_workers: int | None = None, num_epochs: int | None = None,
                        num_threads: int | None = None, pair_maker: PairMaker | None = None):
    """A checkpointable iterator (``get_state`` / ``set_state``) of training batches for this shard.

    num_workers: worker processes (None -> config.data.num_workers; 0 = in this process).
    num_threads: reader threads per process (None -> config.data.num_threads).
    Close it with ``it.close()`` when workers are used (``grain`` also cleans up on GC).
    """
    cfg = _data_cfg(config)
    ds = make_train_dataset(cfg, batch_size, seed, shard_index, shard_count, num_epochs, pair_maker)
    workers = int(_get(cfg, "num_workers", 0) if num_workers is None else num_workers)
    threads = int(_get(cfg, "num_threads", 2) if num_threads is None else num_threads)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2 * threads, 1)))
    if workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
    return iter(it_ds)
