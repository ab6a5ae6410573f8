"""The two speeds (grm_jax/evaluate/speed.py): compile time accounting, the clock, timing.json."""
import jax
import numpy as np
import pytest

from grm_jax.evaluate import speed as SP


def test_compile_timer_counts_only_compilation():
    fn = jax.jit(lambda x: jax.numpy.sin(x) * 3.0 + 1.0)
    x = np.arange(7, dtype=np.float32)
    with SP.CompileTimer() as first:
        fn(x).block_until_ready()
    assert first.seconds > 0
    with SP.CompileTimer() as cached:
        fn(x).block_until_ready()
    assert cached.seconds == 0.0
    fn(x + 1).block_until_ready()  # outside the block: not counted
    assert cached.seconds == 0.0


def test_clock_excludes_compile_and_counts():
    clock = SP.TrackingClock(total_frames=10, total_sequences=2, desc="t", show=False)
    with clock:
        jax.jit(lambda x: x * 5 - 2)(np.ones(3, np.float32)).block_until_ready()
        clock.frames(6)
        clock.sequence_done()
        clock.frames(4)
        clock.sequence_done()
    assert (clock.frames_done, clock.sequences_done) == (10, 2)
    assert 0 < clock.compile_s < clock.wall_s
    assert clock.frames_per_s() == pytest.approx(10 / (clock.wall_s - clock.compile_s))
    wall = clock.wall_s
    assert clock.wall_s == wall  # stopped


def test_timing_sessions_and_fields(tmp_path):
    assert SP.read_timing(tmp_path) == []
    SP.record_session(tmp_path, frames=100, wall_s=12.0, compile_s=2.0, processes=1)
    SP.record_session(tmp_path, frames=50, wall_s=6.0, compile_s=1.0, processes=1)
    sessions = SP.read_timing(tmp_path)
    assert [s["frames"] for s in sessions] == [100, 50]
    fields = SP.speed_fields(123.0, sessions)
    assert fields["frames_per_s"] == pytest.approx(150 / 15.0)
    assert (fields["toolkit_fps"], fields["frames"], fields["compile_s"], fields["sessions"]) == (123.0, 150, 3.0, 2)
    unknown = SP.speed_fields(40.0, [])
    assert unknown["frames_per_s"] is None and unknown["toolkit_fps"] == 40.0
    line = SP.describe({**fields, "this_run": {"frames": 50, "wall_s": 6.0, "compile_s": 1.0, "frames_per_s": 10.0}})
    assert "this run 10.0 frames/s" in line and "all 2 recorded session(s) 10.0 frames/s" in line
    assert "toolkit fps 123.0 (mean of 1/t" in line
