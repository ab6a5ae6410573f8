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
  heatmap (B, S/stride, S/stride) f32, dataset (B,) int32 (index into ``data.datasets``),
  index (B,) int64 (global sample index), skipped_images (B,) int32 (unreadable images skipped
  while making each sample).
"""
from __future__ import annotations

import os

import grain
import numpy as np

from data_pipelines.processing import PairProcessor, make_training_sample
from data_pipelines.sampler import PairSampler
from grm_jax.datasets import PACK_META, Source, require_dataset_root, training_source
from grm_jax.host_memory import keep_freed_memory
from grm_jax.datasets.registry import TRAIN, resolve
from grm_jax.run_config import CropSpec, DataConfig, RunConfig

__all__ = ["build_sources", "PairMaker", "make_train_dataset", "make_train_iterator"]

_UNBOUNDED_SAMPLES = 1 << 40


def _packed_root(data: DataConfig, spec) -> str | None:
    """``<packed_dir>/<name>`` (the registry name or one of its aliases) holding a packed dataset."""
    if data.packed_dir is None:
        return None
    for folder in (spec.name, *spec.aliases):
        path = os.path.join(data.packed_dir, folder)
        if os.path.isfile(os.path.join(path, PACK_META)):
            return path
    return None


def build_sources(data: DataConfig) -> tuple[list[Source], list[float]]:
    """Readers for ``data.datasets`` (registry names) and their sampling weights ``data.ratios``.

    Root of a dataset: ``<data.packed_dir>/<name or alias>`` when that folder holds a packed dataset,
    else ``grm_jax.datasets.require_dataset_root`` (the one dataset-root function; the generated
    sample data defaults to its cache folder; ConfigError for an unset root).
    A root that is itself a packed folder is read with the packed reader too.
    """
    sources = []
    for name in data.datasets:
        spec = resolve(name, TRAIN, where="config.data.datasets")
        root = _packed_root(data, spec) or require_dataset_root(spec.name, data.roots)
        sources.append(training_source(spec.name, root))
    return sources, [float(r) for r in data.ratios]


class PairMaker:
    """Picklable ``global index -> training sample`` map (sampler + processing)."""

    def __init__(self, sources, ratios, template: CropSpec, search: CropSpec, max_gap: int, seed: int,
                 stride: int = 16, reduced_decode: bool = False):
        self.sampler = PairSampler(sources, ratios, max_gap=max_gap)
        self.processor = PairProcessor(template, search, stride=stride, reduced_decode=reduced_decode)
        self.seed = int(seed)
        self._home_pid = os.getpid()  # the process that built it; grain workers get a pickled copy
        self._ready_pid = None

    @classmethod
    def from_run(cls, run: RunConfig, seed: int) -> "PairMaker":
        """The training pairs of ``run``: its datasets, crops (``run.crop``), label stride (the
        patch size) and ``data.reduced_decode``."""
        sources, ratios = build_sources(run.data)
        return cls(sources, ratios, run.crop("template"), run.crop("search"), run.data.max_gap, seed,
                   run.model.patch_size, reduced_decode=run.data.reduced_decode)

    def _prepare_process(self) -> None:
        """Once per process: frames reuse freed heap memory (no page faults, ``keep_freed_memory``);
        in a worker process OpenCV runs single-threaded (the workers are the parallelism; its pool
        threads only spin: benchmarks/decode_ab.py, ``cv2.setNumThreads(1)``)."""
        pid = os.getpid()
        if self._ready_pid == pid:
            return
        keep_freed_memory()
        if pid != self._home_pid:
            import cv2  # noqa: PLC0415

            cv2.setNumThreads(1)
        self._ready_pid = pid

    def __call__(self, index) -> dict[str, np.ndarray]:
        self._prepare_process()
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


def make_train_dataset(run: RunConfig, batch_size: int, seed: int, shard_index: int = 0, shard_count: int = 1,
                       num_epochs: int | None = None, pair_maker: PairMaker | None = None) -> grain.MapDataset:
    """MapDataset of batches for this shard (see module doc). num_epochs None = unbounded stream;
    otherwise ``num_epochs * run.data.samples_per_epoch`` global samples, rounded down to whole
    global batches. ``pair_maker`` (default ``PairMaker.from_run(run, seed)``) makes the samples."""
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} must be in [0, shard_count={shard_count})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    maker = pair_maker if pair_maker is not None else PairMaker.from_run(run, seed)
    global_batch = batch_size * shard_count
    if num_epochs is None:
        total = _UNBOUNDED_SAMPLES
    else:
        total = int(num_epochs) * run.data.samples_per_epoch
    num_batches = total // global_batch
    ds = grain.MapDataset.range(num_batches * batch_size)
    ds = ds.map(_LocalToGlobal(batch_size, shard_index, shard_count)).map(maker)
    return ds.batch(batch_size, drop_remainder=True)


def make_train_iterator(run: RunConfig, batch_size: int, seed: int, shard_index: int = 0, shard_count: int = 1,
                        num_workers: int | None = None, num_epochs: int | None = None,
                        num_threads: int | None = None, pair_maker: PairMaker | None = None):
    """A checkpointable iterator (``get_state`` / ``set_state``) of training batches for this shard.

    num_workers: worker processes (None -> run.data.num_workers; 0 = in this process).
    num_threads: reader threads per process (None -> run.data.num_threads).
    Close it with ``it.close()`` when workers are used (``grain`` also cleans up on GC).
    """
    ds = make_train_dataset(run, batch_size, seed, shard_index, shard_count, num_epochs, pair_maker)
    workers = run.data.num_workers if num_workers is None else int(num_workers)
    threads = run.data.num_threads if num_threads is None else int(num_threads)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2 * threads, 1)))
    if workers > 0:
        _mark_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2))
    return iter(it_ds)


def _mark_absl_flags_parsed() -> None:
    """grain worker processes read absl flags; outside an absl app (a notebook, run_train called
    from Python) mark them parsed so the workers start."""
    from absl import flags  # noqa: PLC0415

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
