"""No compilation or first-call cost in any per-frame time (what ``<seq>_time.txt`` holds and what
the VOT toolkit measures): the batched tracker, the single-sequence tracker and the VOT server.

Deterministic, no wall-clock assert: the trackers' clock is replaced by a fake one that jumps by
BIG seconds whenever jax compiles (jax.monitoring compile events) and whenever a step is called
for the first time with a batch shape (standing for first-execution costs). A time that includes
any of that is >= BIG. Every test starts from a FRESH compilation cache: the persistent cache is
disabled and jax's in-memory caches are cleared, and the test checks that XLA really compiled.
"""
import types

import jax
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax import save_model
from grm_jax.model import GRM
from grm_jax.track import batched as batched_mod
from grm_jax.track import tracker as tracker_mod

BIG = 1000.0
_COMPILE = "/jax/core/compile/backend_compile_duration"


class FakeClock:
    """perf_counter stand-in: +1e-4 s per reading, +BIG per compilation and per first call of a shape."""

    def __init__(self):
        self.now = 0.0
        self.compiles = 0
        self.first_calls = 0
        self._shapes = set()

    def perf_counter(self):
        self.now += 1e-4
        return self.now

    def on_event(self, event, duration_secs, **_):
        if event == _COMPILE:
            self.compiles += 1
            self.now += BIG

    def wrap(self, run_step):
        def step(model_config, dtype, precision, variables, template, search, *args, **kwargs):
            key = (id(model_config), np.shape(search))
            if key not in self._shapes:
                self._shapes.add(key)
                self.first_calls += 1
                self.now += BIG
            return run_step(model_config, dtype, precision, variables, template, search, *args, **kwargs)

        return step


@pytest.fixture()
def clock(monkeypatch, fresh_compile_cache):
    """A fresh compilation cache (the run's persistent cache off: conftest's fresh_compile_cache;
    in-memory caches cleared) and the fake clock installed in the trackers."""
    jax.clear_caches()
    tracker_mod._cached_step.cache_clear()
    fake = FakeClock()
    monkeypatch.setattr(batched_mod, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    monkeypatch.setattr(batched_mod, "run_step", fake.wrap(batched_mod.run_step))
    monkeypatch.setattr(tracker_mod, "run_step", fake.wrap(tracker_mod.run_step))
    jax.monitoring.register_event_duration_secs_listener(fake.on_event)
    try:
        yield fake
    finally:
        jax.monitoring.unregister_event_duration_listener(fake.on_event)


@pytest.fixture(scope="module")
def tiny():
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
    return GRM(config), variables


def _frames(seed, n, h=96, w=128):
    rng = np.random.default_rng(seed)
    frames = [np.full((h, w, 3), 60, np.uint8) for _ in range(n)]
    for k, f in enumerate(frames):
        x, y = 30 + 2 * k, 25 + k
        f[y:y + 24, x:x + 24] = rng.integers(150, 255, (24, 24, 3), dtype=np.uint8)
    return frames


def test_batched_tracker_times_hold_no_compilation(tiny, clock):
    model, variables = tiny
    seqs = [types.SimpleNamespace(name=f"s{k}", frames=_frames(k, n), init_box=np.array([30.0, 25.0, 24.0, 24.0]))
            for k, n in enumerate((6, 4, 9))]
    # batch 2 with shrinking: batch shapes 2 and then 1 -> two compilations, both kept out of the times
    tracker = batched_mod.BatchedTracker(model, variables, None, 0.0, batch_size=2, num_threads=1, prefetch=0,
                                         devices=jax.local_devices()[:1])
    results = list(tracker.track(seqs))
    assert clock.compiles >= 2 and clock.first_calls >= 2  # fresh cache: XLA compiled each batch shape
    for r in results:
        assert r.times.shape == (len(seqs[int(r.name[1:])].frames),)
        assert np.all(r.times < 1.0), (r.name, r.times)  # frame 2 (index 1) included
    assert tracker.stats.warmup >= 2 * BIG


def test_single_tracker_track_calls_hold_no_compilation(tiny, clock):
    model, variables = tiny
    frames = _frames(5, 5)
    tracker = tracker_mod.Tracker(model, variables, None, 0.0)
    tracker.initialize(frames[0], (30.0, 25.0, 24.0, 24.0))
    times = []
    for f in frames[1:]:
        t0 = clock.perf_counter()
        tracker.track(f)
        times.append(clock.perf_counter() - t0)
    assert clock.compiles >= 1 and clock.first_calls == 1
    assert max(times) < 1.0, times


def test_vot_server_replies_hold_no_compilation(tmp_path, clock):
    from trax import Rectangle, TraxStatus

    from grm_jax import vot

    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "state_dict.npz"))
    model_dir = save_model(tmp_path / "grm_tiny", config, variables)
    tracker = vot.build_tracker(vot.parse_args(["--model", str(model_dir), "--threshold", "0"]))  # compiles before the TraX handshake
    frames = _frames(2, 4)

    class Image:
        def __init__(self, array):
            self.array_ = array

        def type(self):
            from trax import Image as TraxImage

            return TraxImage.MEMORY

        def array(self):
            return self.array_

    requests = [types.SimpleNamespace(type=TraxStatus.INITIALIZE, image={"color": Image(frames[0])},
                                      objects=[(Rectangle.create(30, 25, 24, 24), {})])]
    requests += [types.SimpleNamespace(type=TraxStatus.FRAME, image={"color": Image(f)}) for f in frames[1:]]
    requests.append(types.SimpleNamespace(type=TraxStatus.QUIT))
    replies = []

    class Server:  # measures what the toolkit measures: request sent -> state received
        def wait(self):
            self.sent = clock.perf_counter()
            return requests.pop(0)

        def status(self, objects):
            replies.append(clock.perf_counter() - self.sent)

    assert vot.serve(tracker, Server()) == len(frames) - 1
    assert clock.compiles >= 1 and len(replies) == len(frames)
    assert max(replies) < 1.0, replies
