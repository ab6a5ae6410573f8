"""Kill a training run (SIGKILL) after a checkpoint, restart it: it resumes at that step (params, optimizer
state, RNG and data-iterator position) and ends with exactly the parameters of an uninterrupted run.
While the first run lives, a second run into the same workdir is refused; the killed run's lock is
stale and the restart takes it over. SIGTERM (a preemption) stops the run cleanly instead: exit 143,
one line, lock released, and the restart again ends with the uninterrupted run's parameters."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import timeout_s
from grm_jax import checkpoint as ckpt_lib
from grm_jax.workdir_lock import TRAIN_LOCK
from helpers import held_process, wait_for
from train_utils import REPO, final_params, latest_step, run_ok, subprocess_env, train_command

STEPS, EVERY = 8, 4

# Runs launch.py with the train step held before step EVERY + 1 while the file HOLD_FILE exists
# (the test decides when the run may go on, so nothing depends on timing).
HELD = f"""
import os, pathlib, runpy, sys, time
from grm_jax.train import step as step_lib
real, hold = step_lib.make_train_step, pathlib.Path(os.environ["HOLD_FILE"])
def make_train_step(*args, **kwargs):
    fn = real(*args, **kwargs)
    def held(state, batch):
        while int(state.step) >= {EVERY} and hold.exists():
            time.sleep(0.05)
        return fn(state, batch)
    return held
step_lib.make_train_step = make_train_step
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


EXTRA = (f"--config.train.max_steps={STEPS}", f"--config.train.checkpoint_every_steps={EVERY}",
         "--config.train.log_every_steps=2", "--config.train.batch_size=4")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(sample data folder, workdir of a run that was not interrupted)."""
    tmp = tmp_path_factory.mktemp("resume")
    sample, full = tmp / "sample", tmp / "full"
    run_ok(train_command(full, sample, *EXTRA), subprocess_env())
    assert latest_step(full) == STEPS
    return sample, full


@pytest.mark.slow
@pytest.mark.multiprocess
def test_resume_after_sigkill_matches_uninterrupted(tmp_path, uninterrupted):
    sample, full = uninterrupted
    extra = EXTRA
    env = subprocess_env()

    cut, hold = tmp_path / "cut", tmp_path / "hold"
    hold.touch()
    log = open(tmp_path / "cut_first.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", HELD] + train_command(cut, sample, *extra)[1:],
                            env={**env, "HOLD_FILE": str(hold)}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + timeout_s(300)
        while latest_step(cut) is None:
            assert proc.poll() is None, (tmp_path / "cut_first.log").read_text()[-4000:]
            assert time.time() < deadline, "no checkpoint written in time"
            time.sleep(0.05)
        second = subprocess.run(train_command(cut, sample, *extra), env=env, cwd=REPO, capture_output=True,
                                text=True, timeout=timeout_s(300))
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert f"is in use by another training run: pid {proc.pid} on host" in second.stderr, second.stderr[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s(30))
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert latest_step(cut) == EVERY  # held before the step after the first checkpoint
    assert (cut / TRAIN_LOCK).is_file()  # a killed run cannot remove its lock

    out = run_ok(train_command(cut, sample, *extra), env)
    assert f"taking over the stale lock {cut / TRAIN_LOCK}: pid {proc.pid}" in out, out[-3000:]
    assert f"resuming from {ckpt_lib.step_dir(cut, EVERY)}" in out, out[-3000:]
    assert latest_step(cut) == STEPS and not (cut / TRAIN_LOCK).exists()

    want, got = final_params(full), final_params(cut)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_stops_cleanly_and_resumes(tmp_path, uninterrupted):
    """17.4: SIGTERM while a step runs (after the first checkpoint): the step is abandoned, the run
    exits 143 with one line, leaves no lock and no partial checkpoint; the rerun resumes from the
    checkpoint and ends bit-identical to the uninterrupted run."""
    sample, full = uninterrupted
    env = subprocess_env()
    cut, hold = tmp_path / "cut", tmp_path / "hold"
    hold.touch()
    with held_process([sys.executable, "-c", HELD] + train_command(cut, sample, *EXTRA)[1:],
                      env={**env, "HOLD_FILE": str(hold)}, cwd=REPO) as proc:
        wait_for(proc, lambda: latest_step(cut) is not None, timeout_s(600))
        proc.terminate()
        out, err = proc.communicate(timeout=timeout_s(600))
    assert proc.returncode == 143, (out + err)[-4000:]
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM during --mode=train"), err[-3000:]
    assert "Traceback" not in err
    assert latest_step(cut) == EVERY and not (cut / TRAIN_LOCK).exists()
    assert not [p for p in cut.rglob("*") if "tmp" in p.name.lower()]
    out = run_ok(train_command(cut, sample, *EXTRA), env)
    assert "stale lock" not in out and f"resuming from {ckpt_lib.step_dir(cut, EVERY)}" in out, out[-3000:]
    want, got = final_params(full), final_params(cut)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_disk_full_during_checkpoint(tmp_path, uninterrupted, monkeypatch):
    """17.4: the disk fills after the first checkpoint: the next save fails, the run exits 2 with one
    line naming the checkpoints folder, no unfinished step folder stays, step EVERY is intact; with
    space freed the rerun resumes and ends bit-identical to the uninterrupted run. (Without
    permission to mount a tmpfs, the same failure is injected into the reporting context.)"""
    from disk_full import small_disk

    sample, full = uninterrupted
    env = subprocess_env()
    with small_disk(tmp_path / "disk", monkeypatch, size="64m") as disk:
        cut, hold = disk.path / "cut", tmp_path / "hold"
        if disk.injected:
            import errno

            from grm_jax.errors import WorkdirError
            from grm_jax.train import checkpointing

            (cut / "checkpoints" / "8.orbax-checkpoint-tmp").mkdir(parents=True)
            with pytest.raises(WorkdirError, match="no space left on the device"):
                with checkpointing.disk_full_reported(cut):
                    raise OSError(errno.ENOSPC, "No space left on device")
            assert not list((cut / "checkpoints").iterdir())
            return
        hold.touch()
        with held_process([sys.executable, "-c", HELD] + train_command(cut, sample, *EXTRA)[1:],
                          env={**env, "HOLD_FILE": str(hold)}, cwd=REPO) as proc:
            wait_for(proc, lambda: latest_step(cut) is not None, timeout_s(600))
            time.sleep(1.0)  # let the step-EVERY save finish (it is complete once listed; this is margin)
            disk.fill()
            hold.unlink()
            out, err = proc.communicate(timeout=timeout_s(600))
        assert proc.returncode == 2, (out + err)[-4000:]
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert lines and lines[0].startswith(f"error: {cut / 'checkpoints'}: no space left on the device"), err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == [str(EVERY)]
        disk.free()
        out = run_ok(train_command(cut, sample, *EXTRA), env)
        assert f"resuming from {ckpt_lib.step_dir(cut, EVERY)}" in out, out[-3000:]
        want, got = final_params(full), final_params(cut)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
