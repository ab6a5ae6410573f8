"""Many sequences tracked together: one device call advances up to B sequences by one frame.

Each batch slot holds one sequence. Per step, the host crops the next frame of every active slot
(in a thread pool: OpenCV releases the GIL), one jitted call (the same ``step_function`` as the
single tracker) runs all samples, and the host maps every box back. A slot whose sequence ends is
refilled at once with the next pending sequence, so the device batch stays full until the input
runs out; empty slots get an all-zero dummy crop whose output is discarded. While sequences are
pending the batch shape is fixed; once the input is exhausted the remaining active sequences are
compacted into the smallest power-of-two batch that holds them (at most 1 + log2(B) compilations).

Host work off the critical path:
* frames are decoded ahead (``prefetch`` frames per slot, :mod:`grm_jax.track.prefetch`);
* dispatch is asynchronous, and with ``lanes=2`` the slots form two independent device batches:
  the host maps back and crops one while the device runs the other (the default on accelerators;
  on CPU host and "device" share the cores, so one lane is the default there).

Devices: the slots of a lane are sharded along the batch axis over a 1-D mesh of ``devices``
(default: all local devices; the lane size is rounded up to a multiple of their number); the
network variables are replicated.

Every sample sees exactly the crops, float32 device arithmetic and float64 host arithmetic of
:class:`grm_jax.track.tracker.Tracker` (the network has no cross-sample interaction at inference:
BatchNorm uses running statistics), so the boxes equal a one-by-one run.

Per-frame times (``SequenceResult.times``): the sample's own host work (waiting for its decoded
frame, crop) plus its share (1 / active slots) of the lane's transfer + device wait and map-back;
frame 0 holds the initialization time (read + template crop). No compilation and no first-call
cost enters a frame's time: the first time a batch shape is used, the step runs once on the same
inputs outside the timed region (tracing, compiling or loading from a compilation cache,
first-execution setup; ``stats.warmup``) and only the second, identical call is timed. Any
compilation that still happened inside a timed call is subtracted too (the evaluation summary
reports compilation as ``compile_s``). ``BatchedTracker.stats`` sums the stages over a run
(``profile=True`` blocks after each stage so they separate cleanly).
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

from grm_jax.distributed import batch_mesh, batch_sharding, replicated_sharding, round_up
from grm_jax.errors import DataError
from grm_jax.compile_timer import CompileTimer
from grm_jax.model.grm import GRM
from grm_jax.track.frames import check_same_size
from grm_jax.track.prefetch import FrameReader, FrameStream
from grm_jax.track.tracker import (check_frame, postprocess, prepare_search,
                                   prepare_template, resolve_tracking, run_step, validate_box)

__all__ = ["BatchedTracker", "SequenceResult", "StageTimes", "default_lanes", "load_frame"]

# Independent device batches in flight per backend (see the module doc); others: 2.
DEFAULT_LANES = {"cpu": 1}


def default_lanes(backend: str) -> int:
    return DEFAULT_LANES.get(str(backend).lower(), 2)


@dataclasses.dataclass
class SequenceResult:
    """Tracking output of one sequence: boxes (N, 4) float64 (x1,y1,w,h), row 0 = init box;
    times (N,) float64 seconds per frame."""

    name: str
    boxes: np.ndarray
    times: np.ndarray
    # (frame index, error message) of unreadable frames whose box was carried over (on_bad_frame='skip')
    bad_frames: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class StageTimes:
    """Seconds per stage summed over a run. decode: reading + decoding frames (in reader threads
    when prefetching, so partly hidden); decode_wait: time the crops waited for a decoded frame
    (decode's share of the critical path); crop: search crops (summed over threads); transfer:
    host -> device copies; device: dispatch + waiting for results; map_back: boxes to image
    coordinates; warmup: the untimed first call of each batch shape (compilation included).
    frames: frames tracked (initial frames excluded); steps: device calls."""

    decode: float = 0.0
    decode_wait: float = 0.0
    crop: float = 0.0
    transfer: float = 0.0
    device: float = 0.0
    map_back: float = 0.0
    warmup: float = 0.0
    frames: int = 0
    steps: int = 0


def load_frame(frame, what: str = "frame") -> np.ndarray:
    """A frame given as an image path (read with OpenCV, BGR->RGB) or an (H, W, 3) uint8 RGB array."""
    if isinstance(frame, (str, os.PathLike)):
        from grm_jax.track.frames import read_image  # noqa: PLC0415

        return read_image(frame)
    return check_frame(frame, what)


def _init_box(seq) -> np.ndarray:
    box = getattr(seq, "init_box", None)
    if box is None:
        box = np.asarray(seq.ground_truth)[0]
    return validate_box(box, f"sequence {getattr(seq, 'name', '?')!r}: init box")


@dataclasses.dataclass(eq=False)
class _Slot:
    name: str
    stream: FrameStream
    n: int
    index: int  # next frame to track
    state: np.ndarray
    boxes: list
    times: list
    template: np.ndarray
    uid: int
    hw: tuple = (1, 1)  # (H, W) of the last frame read
    bad: list = dataclasses.field(default_factory=list)  # (index, message) of unreadable frames


@dataclasses.dataclass
class _Flight:
    """A dispatched, not yet collected device call of one lane."""

    active: list
    box_px: Any
    rfs: np.ndarray
    hws: list
    host_s: list
    dispatch_s: float


@dataclasses.dataclass
class _Lane:
    slots: list
    layout: tuple = ()
    templates: Any = None
    flight: _Flight | None = None


class _Feed:
    """The pending sequences, started one at a time."""

    def __init__(self, sequences: Iterable):
        self._it = iter(sequences)
        self.exhausted = False
        self.uids = itertools.count(1)

    def next(self):
        seq = None if self.exhausted else next(self._it, None)
        self.exhausted = seq is None
        return seq


class BatchedTracker:
    """Tracks sequences B at a time with the official per-sequence procedure.

    Args:
      model, variables, track_config, threshold, dtype, attention: as :class:`grm_jax.track.tracker.Tracker`.
      batch_size: slots B, split over ``lanes``; a lane is sharded over min(its slots, len(devices))
        devices and rounded up to a multiple of that count (``self.batch_size`` is the result).
      frame_loader: frame -> (H, W, 3) uint8 RGB (default :func:`load_frame`: paths or arrays).
      num_threads: host threads for cropping, and for reading frames (default min(B, cpu count)).
      shrink: once no sequence is pending, run the remaining ones in a smaller power-of-two batch.
      devices: devices the slots are sharded over (default ``jax.local_devices()``).
      prefetch: frames decoded ahead per slot (0 = read each frame when it is cropped).
      lanes: independent device batches in flight (None = ``default_lanes(backend)``).
      profile: block after the transfer and the device call so ``stats`` separates them (slower).
      on_bad_frame: 'error' raises the loader's error for an unreadable frame (naming the file);
        'skip' keeps the previous box for it and lists it in ``SequenceResult.bad_frames``. The
        first frame of a sequence initialises it and is never skipped.

    A sequence is any object with ``name``, ``frames`` (a sequence of image paths or arrays) and
    ``init_box`` (or ``ground_truth`` whose row 0 is used).
    """

    def __init__(self, model: GRM, variables, track_config=None, threshold: float = 0.0, batch_size: int = 8,
                 frame_loader: Callable | None = None, num_threads: int | None = None, shrink: bool = True, *,
                 dtype=None, attention: str | None = None, devices=None, prefetch: int = 2,
                 lanes: int | None = None, profile: bool = False, on_bad_frame: str = "error"):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_config = model.config
        devices = list(devices) if devices is not None else jax.local_devices()
        self.params, self.dtype, self.threshold, self.attention = resolve_tracking(
            model, track_config, threshold, dtype, attention, devices[0].platform)
        self.lanes = max(1, min(int(lanes or default_lanes(devices[0].platform)), int(batch_size)))
        lane_size = -(-int(batch_size) // self.lanes)
        self.devices = devices[:lane_size]  # more devices than slots would only run dummies
        self.lane_size = round_up(lane_size, len(self.devices))
        self.batch_size = self.lanes * self.lane_size
        self.mesh = batch_mesh(self.devices)
        self._sharding = batch_sharding(self.mesh)
        self.variables = jax.device_put({k: variables[k] for k in ("params", "batch_stats")},
                                        replicated_sharding(self.mesh))
        self.frame_loader = frame_loader or load_frame
        self.num_threads = num_threads or max(1, min(self.batch_size, os.cpu_count() or 1))
        self.shrink = bool(shrink)
        self.prefetch = int(prefetch)
        self.profile = bool(profile)
        if on_bad_frame not in ("error", "skip"):
            raise ValueError(f"on_bad_frame must be 'error' or 'skip', got {on_bad_frame!r}")
        self.on_bad_frame = on_bad_frame
        self.stats = StageTimes()
        self._warm_batches: set[int] = set()  # batch shapes whose first call has been made

    # -- slots ----------------------------------------------------------------------------------
    def _start(self, seq, reader: FrameReader, uid: int) -> _Slot:
        """Opens a sequence: reads frame 0 and crops the template around the init box."""
        t0 = time.perf_counter()
        name = str(getattr(seq, "name", "sequence"))
        n = len(seq.frames)
        if n < 1:
            raise ValueError(f"sequence {name!r}: no frames")
        box = _init_box(seq)
        stream = reader.open(seq.frames)
        first, decode_s, _ = stream.take(0)
        self.stats.decode += decode_s
        box = validate_box(box, f"sequence {name!r}: init box", image_hw=first.shape[:2])
        crop, _ = prepare_template(first, box, self.params)
        return _Slot(name, stream, n, 1, box.copy(), [box.copy()], [time.perf_counter() - t0], crop, uid,
                     first.shape[:2])

    def _search(self, slot: _Slot):
        """(crop, resize factor, (H, W), decode s, wait s, crop s) of the slot's next frame."""
        try:
            frame, decode_s, wait_s = slot.stream.take(slot.index)
            check_same_size(frame, slot.hw, f"sequence {slot.name!r}, frame {slot.index}")
        except DataError as err:
            if self.on_bad_frame != "skip":
                raise
            # an unreadable frame: track a black frame of the last size; _collect keeps the previous box
            slot.bad.append((slot.index, str(err)))
            frame, decode_s, wait_s = np.zeros((*slot.hw, 3), np.uint8), 0.0, 0.0
        slot.hw = frame.shape[:2]
        t0 = time.perf_counter()
        crop, rf = prepare_search(frame, slot.state, self.params)
        return crop, rf, frame.shape[:2], decode_s, wait_s, time.perf_counter() - t0

    def _lane_batch(self, n_active: int, exhausted: bool) -> int:
        """Device batch of a lane: its size while sequences are pending; once the input is exhausted,
        the smallest power of two >= the active slots (rounded up to a multiple of the device count),
        so the tail of a long sequence does not pay for dummy samples."""
        if not exhausted or not self.shrink:
            return self.lane_size
        b = 1
        while b < n_active:
            b *= 2
        return min(round_up(b, len(self.devices)), self.lane_size)

    # -- one lane step --------------------------------------------------------------------------
    def _dispatch(self, lane: _Lane, exhausted: bool, pool, compiling: CompileTimer) -> None:
        """Crops the next frame of every active slot and dispatches the device call (no waiting)."""
        p, st = self.params, self.stats
        active = [i for i, s in enumerate(lane.slots) if s is not None]
        nb = self._lane_batch(len(active), exhausted)
        key = (nb, tuple(lane.slots[i].uid for i in active))
        if key != lane.layout:  # active set changed: rebuild the device templates
            templates = np.zeros((nb, p.template_size, p.template_size, 3), np.uint8)
            for k, i in enumerate(active):
                templates[k] = lane.slots[i].template
            lane.templates, lane.layout = jax.device_put(templates, self._sharding), key
        searches = np.zeros((nb, p.search_size, p.search_size, 3), np.uint8)
        rfs = np.ones((nb,), np.float64)
        hws, host_s = [], []
        for k, (crop, rf, hw, decode_s, wait_s, crop_s) in enumerate(
                pool.map(lambda j: self._search(lane.slots[j]), active)):
            searches[k], rfs[k] = crop, rf
            hws.append(hw)
            host_s.append(wait_s + crop_s)
            st.decode, st.decode_wait, st.crop = st.decode + decode_s, st.decode_wait + wait_s, st.crop + crop_s
        if nb not in self._warm_batches:
            self._warm_up(lane.templates, searches, rfs)
            self._warm_batches.add(nb)
        t0 = time.perf_counter()
        search_dev = jax.device_put(searches, self._sharding)
        rf_dev = jax.device_put(rfs.astype(np.float32), self._sharding)
        if self.profile:
            jax.block_until_ready((search_dev, rf_dev))
        t1 = time.perf_counter()
        compiled_before = compiling.seconds  # a new batch shape compiles: not the frames' time
        box_px, _ = run_step(self.model_config, self.dtype, p.matmul_precision, self.variables, lane.templates,
                             search_dev, rf_dev, self.threshold, self.attention)
        if self.profile:
            box_px.block_until_ready()
        t2 = time.perf_counter()
        st.transfer, st.device, st.steps = st.transfer + (t1 - t0), st.device + (t2 - t1), st.steps + 1
        compile_s = compiling.seconds - compiled_before
        lane.flight = _Flight(active, box_px, rfs, hws, host_s, max(t2 - t0 - compile_s, 0.0))

    def _warm_up(self, templates, searches: np.ndarray, rfs: np.ndarray) -> None:
        """The first call of a batch shape, on the step's own inputs, waited for and not timed:
        tracing, compilation (or a compilation-cache load) and first-execution costs stay out of
        the frames' times."""
        t0 = time.perf_counter()
        out = run_step(self.model_config, self.dtype, self.params.matmul_precision, self.variables, templates,
                       jax.device_put(searches, self._sharding),
                       jax.device_put(rfs.astype(np.float32), self._sharding), self.threshold, self.attention)
        jax.block_until_ready(out)
        self.stats.warmup += time.perf_counter() - t0

    def _collect(self, lane: _Lane) -> list[int]:
        """Waits for the lane's device call, maps the boxes back; returns the finished slots' indices."""
        f, lane.flight = lane.flight, None
        t0 = time.perf_counter()
        box_px = np.asarray(f.box_px)
        t1 = time.perf_counter()
        n = len(f.active)
        slots = [lane.slots[i] for i in f.active]
        H = np.asarray([hw[0] for hw in f.hws], np.float64)
        W = np.asarray([hw[1] for hw in f.hws], np.float64)
        new = postprocess(box_px[:n], np.stack([s.state for s in slots]), f.rfs[:n], (H, W), self.params)
        t2 = time.perf_counter()
        self.stats.device += t1 - t0
        self.stats.map_back += t2 - t1
        self.stats.frames += n
        shared = (f.dispatch_s + (t2 - t0)) / n
        for k, slot in enumerate(slots):
            if slot.bad and slot.bad[-1][0] == slot.index:
                new[k] = slot.state  # unreadable frame (on_bad_frame='skip'): carry the previous box
            slot.state = new[k]
            slot.boxes.append(new[k])
            slot.times.append(f.host_s[k] + shared)
            slot.index += 1
        return [i for i in f.active if lane.slots[i].index >= lane.slots[i].n]

    # -- the run --------------------------------------------------------------------------------
    def track(self, sequences: Iterable, on_frames: Callable[[int], None] | None = None) -> Iterator[SequenceResult]:
        """Yields a SequenceResult for every sequence, in the order they finish.

        on_frames(k): called after each device step with the number of frames just tracked.
        """
        feed = _Feed(sequences)
        lanes = [_Lane([None] * self.lane_size) for _ in range(self.lanes)]
        finished: list[SequenceResult] = []

        def finish(slot: _Slot) -> None:
            slot.stream.close()
            finished.append(SequenceResult(slot.name, np.asarray(slot.boxes, np.float64).reshape(-1, 4),
                                           np.asarray(slot.times, np.float64), list(slot.bad)))

        def fill(lane: _Lane, i: int) -> None:
            """Puts the next multi-frame pending sequence into slot i (None once the input is exhausted)."""
            lane.slots[i] = None
            while (seq := feed.next()) is not None:
                slot = self._start(seq, reader, next(feed.uids))
                if on_frames:
                    on_frames(1)
                if slot.n > 1:
                    lane.slots[i] = slot
                    return
                finish(slot)

        with FrameReader(self.frame_loader, self.prefetch, self.num_threads) as reader, \
                concurrent.futures.ThreadPoolExecutor(self.num_threads, "grm-crops") as pool, \
                CompileTimer() as compiling:
            try:
                for lane in lanes:
                    for i in range(self.lane_size):
                        fill(lane, i)
                while True:
                    busy = False
                    for lane in lanes:
                        if lane.flight is not None:
                            n = len(lane.flight.active)
                            for i in self._collect(lane):
                                finish(lane.slots[i])
                                fill(lane, i)
                            if on_frames:
                                on_frames(n)
                        yield from finished
                        finished.clear()
                        if any(s is not None for s in lane.slots):
                            self._dispatch(lane, feed.exhausted, pool, compiling)
                            busy = True
                    if not busy:
                        break
            finally:
                for lane in lanes:
                    for slot in lane.slots:
                        if slot is not None:
                            slot.stream.close()
