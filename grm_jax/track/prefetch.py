"""Frames decoded ahead of the tracker: the frame list of a sequence is known in advance, so its
next frames are read in a thread pool while the current one is cropped and tracked
(``cv2.imread`` / ``cv2.imdecode`` release the GIL).

    reader = FrameReader(load_frame, depth=2, num_threads=4)
    stream = reader.open(frame_paths)      # starts decoding frames 0 .. depth
    frame, decode_s, wait_s = stream.take(0)
    ...
    stream.close(); reader.shutdown()

``depth`` frames per stream are decoded ahead (memory: depth x one frame per open stream);
``depth=0`` reads every frame synchronously in ``take``. Errors of the loader (a missing or
corrupt frame) are raised by ``take`` of that frame, exactly as a synchronous read would.
"""
from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["FrameReader", "FrameStream"]


def _timed(loader: Callable[[Any], np.ndarray], item) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    frame = loader(item)
    return frame, time.perf_counter() - t0


class FrameStream:
    """The frames of one sequence, read ahead in order. ``take`` must be called with increasing
    indices by one thread at a time (one tracker slot)."""

    def __init__(self, reader: "FrameReader", frames: Sequence):
        self._reader = reader
        self._frames = frames
        self._futures: dict[int, concurrent.futures.Future] = {}
        self._next = 0  # next index to submit
        self._fill(0)

    def _fill(self, start: int) -> None:
        """Keeps frames start .. start + depth - 1 submitted."""
        pool, depth = self._reader.pool, self._reader.depth
        if pool is None:
            return
        self._next = max(self._next, start)
        while self._next < min(len(self._frames), start + depth):
            self._futures[self._next] = pool.submit(_timed, self._reader.loader, self._frames[self._next])
            self._next += 1

    def take(self, index: int) -> tuple[np.ndarray, float, float]:
        """Frame ``index`` -> (frame, seconds spent decoding it, seconds this call waited for it)."""
        t0 = time.perf_counter()
        future = self._futures.pop(index, None)
        if future is None:
            frame, decode_s = _timed(self._reader.loader, self._frames[index])
        else:
            frame, decode_s = future.result()
        wait_s = time.perf_counter() - t0
        for old in [i for i in self._futures if i < index]:  # skipped frames (not used by the trackers)
            self._futures.pop(old).cancel()
        self._fill(index + 1)
        return frame, decode_s, wait_s

    def close(self) -> None:
        """Drops frames read ahead but not taken (cancels those not started)."""
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()


class FrameReader:
    """Thread pool shared by the streams of one tracking run.

    loader: item of a frame list -> (H, W, 3) uint8 RGB. depth: frames read ahead per stream
    (0 = synchronous reads). num_threads: reader threads.
    """

    def __init__(self, loader: Callable[[Any], np.ndarray], depth: int = 2, num_threads: int = 2):
        if int(depth) < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self.loader = loader
        self.depth = int(depth)
        self.pool = (concurrent.futures.ThreadPoolExecutor(max(1, int(num_threads)), "grm-frames")
                     if self.depth > 0 else None)

    def open(self, frames: Sequence) -> FrameStream:
        return FrameStream(self, frames)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
