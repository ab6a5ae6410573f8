"""Kill a training run (SIGKILL) after a checkpoint, restart it: it resumes at that step (params, optimizer
state, RNG and data-iterator position) and ends with exactly the parameters of an uninterrupted run."""
import os
import signal
import subprocess
import time

import numpy as np

from train_utils import REPO, final_params, latest_step, run_ok, subprocess_env, train_command

STEPS, EVERY = 8, 4


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    sample, cache = tmp_path / "sample", tmp_path / "xla_cache"
    extra = (f"--config.train.max_steps={STEPS}", f"--config.train.checkpoint_every_steps={EVERY}",
             "--config.train.log_every_steps=2", "--config.train.batch_size=4")
    env = subprocess_env(cache)

    full = tmp_path / "full"
    run_ok(train_command(full, sample, *extra), env)
    assert latest_step(full) == STEPS

    cut = tmp_path / "cut"
    slow = subprocess_env(cache, GRM_TRAIN_STEP_DELAY="1.5")
    log = open(tmp_path / "cut_first.log", "w")
    proc = subprocess.Popen(train_command(cut, sample, *extra), env=slow, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while latest_step(cut) is None:
            assert proc.poll() is None, (tmp_path / "cut_first.log").read_text()[-4000:]
            assert time.time() < deadline, "no checkpoint written in time"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_step(cut)
    assert killed_at == EVERY  # killed during the slow steps after the first checkpoint

    out = run_ok(train_command(cut, sample, *extra), env)
    assert f"resuming from {cut / 'checkpoints' / str(EVERY)}" in out, out[-3000:]
    assert latest_step(cut) == STEPS

    want, got = final_params(full), final_params(cut)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
