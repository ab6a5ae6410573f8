"""DevicePrefetcher: batches in order, placed ahead of the consumer, and a checkpoint position that is the
one after the last CONSUMED batch (so a resume neither skips nor repeats the prefetched ones)."""
import json
import threading
import time

import pytest

from grm_jax.train.prefetch import DevicePrefetcher


class Counting:
    """Host iterator 0..n-1 with grain's get_state / set_state / close."""

    def __init__(self, n, fail_at=None):
        self.i, self.n, self.fail_at, self.closed = 0, n, fail_at, False

    def __iter__(self):
        return self

    def __next__(self):
        if self.i == self.fail_at:
            raise OSError(f"unreadable batch {self.i}")
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return self.i - 1

    def get_state(self):
        return {"next_index": self.i}

    def close(self):
        self.closed = True


def _wait_for(cond, timeout=10.0):
    t0 = time.time()
    while not cond() and time.time() - t0 < timeout:
        time.sleep(0.01)
    return cond()


def test_order_prefetch_and_consumed_position():
    host = Counting(10)
    placed = []
    it = DevicePrefetcher(host, lambda b: placed.append(threading.current_thread().name) or ("dev", b), depth=2)
    assert json.loads(it.get_state()) == {"next_index": 0}
    assert [next(it) for _ in range(3)] == [("dev", 0), ("dev", 1), ("dev", 2)]
    assert _wait_for(lambda: host.i >= 5)  # read ahead: 2 queued + 1 being placed
    assert json.loads(it.get_state()) == {"next_index": 3}  # not the host's own position (5 or 6)
    assert set(placed) == {"device-prefetch"}  # placed in the background thread
    assert [b for _, b in it] == list(range(3, 10))
    assert json.loads(it.get_state()) == {"next_index": 10}
    with pytest.raises(StopIteration):
        next(it)
    it.close()
    assert host.closed


def test_host_error_reaches_the_step_loop():
    it = DevicePrefetcher(Counting(10, fail_at=2), lambda b: b, depth=2)
    assert next(it) == 0 and next(it) == 1
    with pytest.raises(OSError, match="unreadable batch 2"):
        next(it)
    it.close()


def test_close_while_the_queue_is_full():
    host = Counting(1000)
    it = DevicePrefetcher(host, lambda b: b, depth=1)
    assert next(it) == 0
    it.close()
    assert host.closed and host.i < 10
    with pytest.raises(ValueError, match="depth must be >= 1"):
        DevicePrefetcher(Counting(1), lambda b: b, depth=0)
