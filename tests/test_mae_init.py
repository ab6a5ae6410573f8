"""Training starts from MAE weights through the core converter (launch.py end to end).

With every learning rate at 0 the checkpoint after one step must hold exactly the
converted MAE backbone and the official finetune_track position tables.
"""
import sys

import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import load_state_dict
from train_utils import REPO, data_overrides, final_params, run_ok, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

MAE_PTH = FIXTURES / "mae_tiny" / "mae_pretrain_vit_tiny_random.pth"


def test_training_starts_from_mae(tmp_path):
    cmd = [sys.executable, str(REPO / "launch.py"), "--config", str(REPO / "configs" / "grm_tiny_cpu.py"),
           "--workdir", str(tmp_path / "run"), *data_overrides(tmp_path / "sample"),
           f"--config.init.mae={MAE_PTH}", "--config.train.max_steps=1", "--config.train.batch_size=2",
           "--config.train.checkpoint_every_steps=1", "--config.train.lr=0.0", "--config.train.divide_lr=0.0"]
    log = run_ok(cmd, subprocess_env())
    assert "MAE weights" in log
    params = final_params(tmp_path / "run")
    expected = np.load(FIXTURES / "mae_tiny" / "expected.npz")
    state = load_state_dict(MAE_PTH, "model")

    def leaf(*names):
        key = next(k for k in params if all(n in str(k) for n in names))
        return np.asarray(params[key])

    np.testing.assert_allclose(leaf("pos_embed_x"), expected["pos_embed_x"], atol=1e-5)
    np.testing.assert_allclose(leaf("pos_embed_z"), expected["pos_embed_z"], atol=1e-5)
    np.testing.assert_array_equal(leaf("blocks_2", "qkv", "kernel"), state["blocks.2.attn.qkv.weight"].T)
    np.testing.assert_array_equal(leaf("'norm'", "scale"), state["norm.weight"])
