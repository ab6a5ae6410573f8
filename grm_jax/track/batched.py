"""Many sequences tracked together: one device call advances up to B sequences by one frame.

Each of the B batch slots holds one sequence. Per step, the host reads and crops the next frame of
every active slot (in a thread pool: OpenCV releases the GIL), one jitted call (the same
``step_function`` as the single tracker) runs all B samples, and the host maps every box back.
A slot whose sequence ends is refilled at once with the next pending sequence, so the device batch
stays full until the input runs out; empty slots get an all-zero dummy crop whose output is
discarded. While sequences are pending the batch shape is fixed (B); once the input is exhausted the
remaining active sequences are compacted into the smallest power-of-two batch that holds them, so
there are at most 1 + log2(B) compilations.

Every sample sees exactly the crops, float32 device arithmetic and float64 host arithmetic of
:class:`grm_jax.track.tracker.Tracker` (the network has no cross-sample interaction at
inference: BatchNorm uses running statistics), so the boxes equal a one-by-one run.

Per-frame times (``SequenceResult.times``): the sample's own host work (frame read, crop,
map-back) plus its share (1 / number of active slots) of the device call; frame 0 holds the
initialization time (read + template crop).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import time
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np

from grm_jax.model.grm import GRM
from grm_jax.track.tracker import (TrackParams, _model_dtype, check_frame, postprocess, prepare_search,
                                   prepare_template, run_step, validate_box)

__all__ = ["BatchedTracker", "SequenceResult", "load_frame", "track_sequences"]


@dataclasses.dataclass
class SequenceResult:
    """Tracking output of one sequence: boxes (N, 4) float64 (x1,y1,w,h), row 0 = init box;
    times (N,) float64 seconds per frame."""

    name: str
    boxes: np.ndarray
    times: np.ndarray


def load_frame(frame, what: str = "frame") -> np.ndarray:
    """A frame given as an image path (read with OpenCV, BGR->RGB) or an (H, W, 3) uint8 RGB array."""
    if isinstance(frame, (str, os.PathLike)):
        from grm_jax.track.video import read_image  # noqa: PLC0415

        return read_image(frame)
    return check_frame(frame, what)


def _init_box(seq) -> np.ndarray:
    box = getattr(seq, "init_box", None)
    if box is None:
        box = np.asarray(seq.ground_truth)[0]
    return validate_box(box, f"sequence {getattr(seq, 'name', '?')!r}: init box")


@dataclasses.dataclass
class _Slot:
    seq: Any
    name: str
    frames: Any
    n: int
    index: int  # next frame to track
    state: np.ndarray
    boxes: list
    times: list
    image_hw: tuple = (0, 0)
    template: np.ndarray | None = None
    uid: int = 0


class BatchedTracker:
    """Tracks sequences B at a time with the official per-sequence procedure.

    Args:
      model, variables, track_config, threshold: as :class:`grm_jax.track.tracker.Tracker`.
      batch_size: device batch B (slots).
      frame_loader: frame -> (H, W, 3) uint8 RGB (default :func:`load_frame`: paths or arrays).
      num_threads: host threads for reading/cropping frames (default min(B, cpu count)).
      shrink: once no sequence is pending, run the remaining ones in a smaller power-of-two batch.

    A sequence is any object with ``name``, ``frames`` (a sequence of image paths or arrays) and
    ``init_box`` (or ``ground_truth`` whose row 0 is used).
    """

    def __init__(self, model: GRM, variables, track_config=None, threshold: float = 0.0, batch_size: int = 8,
                 frame_loader: Callable | None = None, num_threads: int | None = None, shrink: bool = True):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.model_config = model.config
        self.dtype = _model_dtype(model)
        if isinstance(track_config, TrackParams):
            track_config = dataclasses.asdict(track_config)
        self.params = TrackParams.from_config(track_config, self.model_config)
        threshold = float(threshold)
        if not np.isfinite(threshold) or not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.threshold = threshold
        self.variables = jax.device_put({k: variables[k] for k in ("params", "batch_stats")})
        self.frame_loader = frame_loader or load_frame
        self.num_threads = num_threads or max(1, min(self.batch_size, os.cpu_count() or 1))
        self.shrink = bool(shrink)

    # -- slot management ----------------------------------------------------------------------
    def _start(self, seq) -> tuple[_Slot, np.ndarray]:
        t0 = time.perf_counter()
        name = str(getattr(seq, "name", "sequence"))
        frames = seq.frames
        n = len(frames)
        if n < 1:
            raise ValueError(f"sequence {name!r}: no frames")
        box = _init_box(seq)
        first = self.frame_loader(frames[0])
        crop, _ = prepare_template(first, box, self.params)
        slot = _Slot(seq, name, frames, n, 1, box.copy(), [box.copy()], [], first.shape[:2])
        slot.times.append(time.perf_counter() - t0)
        return slot, crop

    def _search(self, slot: _Slot):
        t0 = time.perf_counter()
        frame = self.frame_loader(slot.frames[slot.index])
        crop, rf = prepare_search(frame, slot.state, self.params)
        return crop, rf, frame.shape[:2], time.perf_counter() - t0

    def _batch_size_for(self, n_active: int, exhausted: bool) -> int:
        """Device batch: B while sequences are pending; once the input is exhausted, the smallest
        power of two >= the number of active slots (at most log2(B) extra compilations), so the
        tail of a long sequence does not pay for B - 1 dummy samples."""
        if not exhausted or not self.shrink:
            return self.batch_size
        b = 1
        while b < n_active:
            b *= 2
        return min(b, self.batch_size)

    def track(self, sequences: Iterable, on_frames: Callable[[int], None] | None = None) -> Iterator[SequenceResult]:
        """Yields a SequenceResult for every sequence, in the order they finish.

        on_frames(k): called after each step with the number of frames just tracked (progress bars).
        """
        B, p = self.batch_size, self.params
        T, S = p.template_size, p.search_size
        pending = iter(sequences)
        exhausted = False
        slots: list[_Slot | None] = [None] * B
        finished: list[SequenceResult] = []

        def finish(slot: _Slot):
            finished.append(SequenceResult(slot.name, np.asarray(slot.boxes, np.float64).reshape(-1, 4),
                                           np.asarray(slot.times, np.float64)))

        def fill(i: int) -> None:
            """Puts the next multi-frame pending sequence into slot i (None when the input is exhausted)."""
            nonlocal exhausted
            slots[i] = None
            while not exhausted:
                seq = next(pending, None)
                if seq is None:
                    exhausted = True
                    return
                slot, crop = self._start(seq)
                slot.template = crop
                slot.uid = next(uids)
                if on_frames:
                    on_frames(1)
                if slot.n == 1:
                    finish(slot)
                    continue
                slots[i] = slot
                return

        uids = itertools.count(1)
        layout: tuple = ()
        templates_dev = None
        with concurrent.futures.ThreadPoolExecutor(self.num_threads) as pool:
            for i in range(B):
                fill(i)
            while True:
                yield from finished
                finished.clear()
                active = [i for i in range(B) if slots[i] is not None]
                if not active:
                    break
                nb = self._batch_size_for(len(active), exhausted)
                key = (nb, tuple(slots[i].uid for i in active))
                if key != layout:  # active set changed: rebuild the device templates
                    templates = np.zeros((nb, T, T, 3), np.uint8)
                    for k, i in enumerate(active):
                        templates[k] = slots[i].template
                    templates_dev = jax.device_put(templates)
                    layout = key
                searches = np.zeros((nb, S, S, 3), np.uint8)
                rfs = np.ones((nb,), np.float64)
                hws, host_t = [], []
                for k, (crop, rf, hw, dt) in enumerate(pool.map(lambda j: self._search(slots[j]), active)):
                    searches[k], rfs[k] = crop, rf
                    hws.append(hw)
                    host_t.append(dt)
                t0 = time.perf_counter()
                box_px, _ = run_step(self.model_config, self.dtype, p.matmul_precision, self.variables,
                                     templates_dev, searches, rfs, self.threshold)
                box_px = np.asarray(box_px)
                n = len(active)
                dev_share = (time.perf_counter() - t0) / n
                t1 = time.perf_counter()
                prev = np.stack([slots[i].state for i in active])
                H = np.asarray([hw[0] for hw in hws], np.float64)
                W = np.asarray([hw[1] for hw in hws], np.float64)
                new = postprocess(box_px[:n], prev, rfs[:n], (H, W), p)
                post_share = (time.perf_counter() - t1) / n
                for k, i in enumerate(active):
                    slot = slots[i]
                    slot.state = new[k]
                    slot.boxes.append(new[k])
                    slot.times.append(host_t[k] + dev_share + post_share)
                    slot.image_hw = hws[k]
                    slot.index += 1
                    if slot.index >= slot.n:
                        finish(slot)
                        fill(i)
                if on_frames:
                    on_frames(n)


def track_sequences(model: GRM, variables, sequences: Iterable, track_config=None, threshold: float = 0.0,
                    batch_size: int = 8, **kwargs) -> dict[str, SequenceResult]:
    """Tracks all ``sequences`` (batched) -> {name: SequenceResult} in input order."""
    sequences = list(sequences)
    tracker = BatchedTracker(model, variables, track_config, threshold, batch_size, **kwargs)
    results = {r.name: r for r in tracker.track(sequences)}
    return {str(s.name): results[str(s.name)] for s in sequences}
