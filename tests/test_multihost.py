"""Two processes on this machine (2 CPU devices each, gloo collectives) joined by
jax.distributed.initialize train together, each reading its own shard of the sample stream, and end
with the parameters of one process (4 devices) trained on the same global batches."""
import sys

import numpy as np
import pytest

from grm_jax import checkpoint as ckpt_lib
from grm_jax.workdir_lock import TRAIN_LOCK
from train_utils import final_params, latest_step, run_ok, run_processes, subprocess_env, train_command

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

STEPS = 3
LR = 4e-4


# Joins the processes BEFORE launch.py imports grm_jax: importing grm_jax.model currently creates a jax
# array at module level (grm_jax/model/attention.py RELATION_RULE), which initialises the XLA backend
# and makes run_train's own jax.distributed.initialize() too late. run_train then sees the runtime
# already initialised and goes on with it.
BOOTSTRAP = """
import os, runpy, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(os.environ["JAX_COORDINATOR_ADDRESS"], int(os.environ["JAX_NUM_PROCESSES"]),
                           int(os.environ["JAX_PROCESS_ID"]))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _bias_before_batchnorm(key):
    # exact gradient 0 (removed by the following BatchNorm): AdamW turns rounding noise into updates
    # of up to lr per step, so only that bound is checked
    return "box_head" in key and key.endswith("['bias']") and any(f"['conv{i}']" in key for i in range(1, 5))


def test_two_processes_match_one_process(tmp_path):
    sample = tmp_path / "sample"
    extra = (f"--config.train.max_steps={STEPS}", "--config.train.checkpoint_every_steps=100",
             "--config.train.log_every_steps=1", "--config.train.batch_size=8")

    single = tmp_path / "single"
    run_ok(train_command(single, sample, *extra), subprocess_env(devices=4))

    multi = tmp_path / "multi"
    cmd = [sys.executable, "-c", BOOTSTRAP] + train_command(multi, sample, *extra)[1:]
    text = run_processes(cmd, tmp_path)
    assert "2 process(es), 4 device(s)" in text[0]
    assert latest_step(multi) == STEPS == latest_step(single)
    # each process saved its own data-iterator position (its own shard of the stream)
    data_iter = ckpt_lib.step_dir(multi, STEPS) / ckpt_lib.ITEM_DATA_ITER
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= {p.name for p in data_iter.iterdir()}
    # process 0 alone locked the workdir, and released it
    assert "stale lock" not in text[0] + text[1] and not (multi / TRAIN_LOCK).exists()

    want, got = final_params(single), final_params(multi)
    assert want.keys() == got.keys()
    for k in want:
        if _bias_before_batchnorm(k):
            continue
        # fp32, same 4-device layout; only the cross-process all-reduce differs (its summation order
        # moves values by a few float32 ulps: 16 ulps of the value, plus 1e-3 of one step's update)
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=0.05 * LR, err_msg=k)
        close = np.abs(got[k] - want[k]) <= 1e-3 * LR + 16 * np.finfo(np.float32).eps * np.abs(want[k])
        assert close.mean() >= 0.99, k
