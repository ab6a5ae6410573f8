"""Device prefetch for the training loop: batches are read and placed on the devices ahead of the step.

``DevicePrefetcher(host_iter, put, depth)`` runs ``put(next(host_iter))`` in a background thread and
keeps up to ``depth`` device batches ready (plus the one being placed), so the step that follows does not wait for the input
pipeline or the host-to-device copy (double buffering at depth 2). The host iterator's position is
recorded after every batch it gives, and ``get_state()`` returns the position after the LAST
CONSUMED batch (not after the prefetched ones): a checkpoint of step k resumes exactly at batch
k + 1. ``get_state`` has the form grain's checkpoint handler takes from an iterator that is not a
grain ``DatasetIterator`` (JSON bytes); the position is restored on the host iterator itself,
before it is wrapped.
"""
from __future__ import annotations

import json
import queue
import threading
from typing import Any, Callable, Iterator

__all__ = ["DevicePrefetcher"]

_DONE = object()


class DevicePrefetcher:
    """Iterator of device batches, ``depth`` ahead (see module doc). Close with ``close()``."""

    def __init__(self, host_iter: Iterator, put: Callable[[Any], Any], depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._host = host_iter
        self._put = put
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._state = self._host_state()
        self._thread = threading.Thread(target=self._fill, name="device-prefetch", daemon=True)
        self._thread.start()

    def _host_state(self):
        get = getattr(self._host, "get_state", None)
        return None if get is None else get()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    host = next(self._host)
                except StopIteration:
                    self._queue.put((_DONE, None))
                    return
                item = (self._put(host), self._host_state())
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001  (raised again in the consumer's thread)
            self._queue.put((_DONE, e))

    def __iter__(self):
        return self

    def __next__(self):
        batch, state = self._queue.get()
        if batch is _DONE:
            self._queue.put((_DONE, state))  # later calls end the same way
            if state is not None:
                raise state
            raise StopIteration
        self._state = state
        return batch

    def get_state(self) -> bytes:
        """JSON bytes of the host iterator's position after the last batch returned by ``next``."""
        state = self._state
        if isinstance(state, bytes):
            return state
        return json.dumps(state, indent=4).encode()

    def close(self) -> None:
        """Stops the background thread, then closes the host iterator (grain workers) if it can be closed."""
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=10)
        close = getattr(self._host, "close", None)
        if close is not None:
            close()
