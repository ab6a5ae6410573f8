"""ONNX export (jax2onnx, the ``[onnx]`` extra) run with onnxruntime equals the live step.

jax2onnx 0.17 pins orbax-checkpoint < 0.11.37, older than ours, so conversion and inference run in
a cached venv that sees this environment's packages and has the extra installed on top
(tests/overlay_venv.py): the same ``python -m grm_jax.export ... --format onnx`` a user runs in the
venv README describes. The outputs are compared here with the live fp32 step (tiny fixture model,
real tracker crops, thresholds 0 and 0.4).
"""
import shutil
import subprocess

import numpy as np
import pytest

import grm_jax.export.onnx_loader as onnx_loader
from conftest import timeout_s
from export_utils import THRESHOLDS, division_margins, live_outputs, make_model_dir, tracker_crops
from overlay_venv import cached_jax_env, overlay_for_extra

pytestmark = [pytest.mark.slow, pytest.mark.venv, pytest.mark.multiprocess]

BATCH = 3
MARGIN = 1e-4  # decisions closer than this to their boundary may differ between implementations
# onnx_loader.py copied next to the script, run with grm_jax and jax unimportable: onnxruntime + numpy only
RUN_ONNX = """
import sys
sys.modules.update({"grm_jax": None, "jax": None})
import numpy as np
from onnx_loader import load_onnx
step = load_onnx(sys.argv[1])
c = np.load(sys.argv[2])
out = {}
for thr in (0.0, 0.4):
    box, dec, score = step(c["template"], c["search"], c["resize_factor"], thr)
    out.update({f"box_{thr}": box, f"decisions_{thr}": dec, f"score_{thr}": score})
np.savez(sys.argv[3], **out)
"""


@pytest.fixture(scope="module")
def onnx_python():
    return overlay_for_extra("onnx")


def _run(cmd, cwd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout_s(1200), cwd=cwd,
                          env=cached_jax_env(cmd[0]))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_onnx_runtime_outputs_equal_the_live_step(onnx_python, tmp_path):
    model_dir = make_model_dir(tmp_path / "grm_tiny")
    template, search, resize_factor = tracker_crops(model_dir, BATCH)
    out_dir = tmp_path / "onnx"
    log = _run([onnx_python, "-m", "grm_jax.export", model_dir, out_dir, "--format", "onnx", "--batch", BATCH],
               tmp_path)
    assert "ONNX, batch 3, float32" in log
    np.savez(tmp_path / "crops.npz", template=template, search=search, resize_factor=resize_factor)
    shutil.copy(onnx_loader.__file__, tmp_path / "onnx_loader.py")
    _run([onnx_python, "-c", RUN_ONNX, out_dir, tmp_path / "crops.npz", tmp_path / "onnx_out.npz"], tmp_path)
    got = np.load(tmp_path / "onnx_out.npz")
    for thr in THRESHOLDS:
        box_px, decisions, score_map = live_outputs(model_dir, template, search, resize_factor, thr)
        np.testing.assert_allclose(got[f"box_{thr}"], box_px, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got[f"score_{thr}"], score_map, rtol=0, atol=1e-4)
        assert got[f"decisions_{thr}"].dtype == bool and got[f"decisions_{thr}"].shape == decisions.shape
        clear = division_margins(model_dir, template, search, thr) >= MARGIN
        assert clear.mean() > 0.99, f"only {clear.mean():.2%} of the decisions have a margin >= {MARGIN}"
        np.testing.assert_array_equal(got[f"decisions_{thr}"][clear], decisions[clear])  # 100 % agreement
