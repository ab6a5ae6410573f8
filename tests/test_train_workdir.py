"""Training reliability, in this process (micro GRM, sample data, 8 CPU devices): a corrupt newest
checkpoint does not block resuming, a NaN loss stops training before anything bad is saved, a
workdir takes one run at a time, and a finished run claims no checkpoint it did not write."""
import os
import shutil
import socket
import subprocess
import sys

import jax.numpy as jnp
import pytest

from grm_jax import checkpoint as ckpt_lib
from grm_jax.configuration import load_run_config
from grm_jax.errors import CheckpointError, TrainingError, WorkdirError
from grm_jax.train import loop
from grm_jax.train import step as step_lib
from grm_jax.train.workdir import WorkdirLock
from grm_jax.workdir_lock import TRAIN_LOCK
from launch import TRAIN_PARTS
from run_once import build_once
from train_utils import MICRO_OVERRIDES, data_overrides, latest_step

pytestmark = [pytest.mark.slow]

EVERY = 2


def _run(sample_dir, *overrides):
    """The micro run of these tests, on generated sequences read as a configured dataset."""
    return load_run_config("grm_tiny_cpu", [o.removeprefix("--config.") for o in
                                            MICRO_OVERRIDES + data_overrides(sample_dir)] + [
        "train.batch_size=8", f"train.checkpoint_every_steps={EVERY}", "train.keep_checkpoints=3",
        "train.log_every_steps=2", *overrides])


def _train(base):
    out = loop.run_train(_run(base / "sample", "train.max_steps=4"), base / "run", TRAIN_PARTS)
    assert out["step"] == 4 and out["checkpoint"] == str(ckpt_lib.step_dir(base / "run", 4))
    assert ckpt_lib.checkpoint_steps(base / "run") == [2, 4]
    assert not (base / "run" / TRAIN_LOCK).exists()  # released
    assert (base / "run" / ckpt_lib.RUN_CONFIG_FILE).is_file() and (base / "run" / ckpt_lib.TENSORBOARD_DIR).is_dir()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A workdir trained to step 4 (checkpoints 2 and 4) and the sample data folder: trained once
    per test run (all xdist workers share it; tests copy the workdir before training on)."""
    base = build_once(tmp_path_factory, "train_workdir", _train)
    return base / "run", base / "sample"


def _copy(trained, tmp_path):
    workdir, sample = trained
    shutil.copytree(workdir, tmp_path / "run")
    return tmp_path / "run", sample


def _corrupt(workdir, step, item=ckpt_lib.ITEM_VARIABLES):
    files = [p for p in (ckpt_lib.step_dir(workdir, step) / item).rglob("*") if p.is_file() and "d" in p.parts]
    assert files
    for p in files:
        p.write_bytes(b"not a tensorstore chunk")


def test_corrupt_newest_checkpoint_falls_back(trained, tmp_path, capsys):
    workdir, sample = _copy(trained, tmp_path)
    _corrupt(workdir, 4)
    out = loop.run_train(_run(sample, "train.max_steps=6"), workdir, TRAIN_PARTS)
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if "checkpoint step 4, item 'variables'" in ln]
    assert len(lines) == 1 and lines[0].startswith("skipping ") and "tensorstore_spec" not in lines[0], text
    assert f"resuming from {ckpt_lib.step_dir(workdir, 2)}" in text
    assert "compiling the train step (first step) ..." in text
    assert (workdir / ckpt_lib.CORRUPT_CHECKPOINTS_DIR / "4").is_dir()
    assert out["step"] == 6 and ckpt_lib.checkpoint_steps(workdir) == [2, 4, 6]


def test_no_restorable_checkpoint_is_one_error(trained, tmp_path):
    workdir, sample = _copy(trained, tmp_path)
    _corrupt(workdir, 4)
    _corrupt(workdir, 2, ckpt_lib.ITEM_TRAIN_STATE)
    with pytest.raises(CheckpointError, match=r"none of the checkpoints .* can be restored \(steps 4, 2"):
        loop.run_train(_run(sample, "train.max_steps=6"), workdir, TRAIN_PARTS)
    assert not (workdir / TRAIN_LOCK).exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(trained, tmp_path, monkeypatch, capsys):
    workdir, sample = _copy(trained, tmp_path)
    real = step_lib.make_train_step

    def make_train_step(*args, **kwargs):  # step 7 sees a NaN template
        fn = real(*args, **kwargs)

        def poisoned(state, batch):
            if int(state.step) == 6:
                batch = {**batch, "template": batch["template"] * jnp.nan}
            return fn(state, batch)
        return poisoned

    monkeypatch.setattr(step_lib, "make_train_step", make_train_step)
    with pytest.raises(TrainingError, match=r"the loss is nan .* at step 7; the last good checkpoint is "
                                            + str(ckpt_lib.step_dir(workdir, 6))):
        loop.run_train(_run(sample, "train.max_steps=10"), workdir, TRAIN_PARTS)
    assert latest_step(workdir) == 6
    assert not (workdir / TRAIN_LOCK).exists()


def test_finished_run_claims_nothing_new(trained, tmp_path, capsys):
    workdir, sample = _copy(trained, tmp_path)
    out = loop.run_train(_run(sample, "train.max_steps=3"), workdir, TRAIN_PARTS)
    text = capsys.readouterr().out
    assert "nothing to train" in text and "training finished" not in text and "compiling" not in text
    assert out["step"] == 4 and ckpt_lib.checkpoint_steps(workdir) == [2, 4]


def test_second_run_is_refused(trained, tmp_path):
    workdir, sample = _copy(trained, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (workdir / TRAIN_LOCK).write_text(
            f'{{"host": "{socket.gethostname()}", "pid": {holder.pid}, "started": "now"}}\n')
        with pytest.raises(WorkdirError, match=rf"in use by another training run: pid {holder.pid} on host"):
            loop.run_train(_run(sample, "train.max_steps=6"), workdir, TRAIN_PARTS)
        assert latest_step(workdir) == 4
    finally:
        holder.kill()
        holder.wait()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_stale_and_foreign(tmp_path):
    said = []
    lock_file = tmp_path / TRAIN_LOCK
    lock_file.write_text(f'{{"host": "{socket.gethostname()}", "pid": {_dead_pid()}}}')
    with WorkdirLock.acquire(tmp_path, said.append) as lock:
        assert lock.holder["pid"] == os.getpid() and "no longer running" in said[0]
        assert lock_file.is_file()
    assert not lock_file.exists()
    lock_file.write_text('{"host": "other-host.example", "pid": 1}')
    with pytest.raises(WorkdirError, match="other-host.example") as err:
        WorkdirLock.acquire(tmp_path)
    assert str(lock_file) in err.value.hint
    lock_file.write_text("garbage")
    with pytest.raises(WorkdirError, match="not a grm-jax lock file"):
        WorkdirLock.acquire(tmp_path)
