"""A non-editable install works like any package: build the wheel, install it into a fresh
venv, and run a tiny train-and-track with the `grm-jax` console script from a folder outside
the checkout, with bundled config names.

Cheap by design: the wheel is built without build isolation, and the fresh venv reaches the
dependencies already installed in the test environment through a .pth line (nothing is
downloaded); grm_jax itself must come from the wheel.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import cv2
import numpy as np
import pytest

from conftest import timeout_s
from train_utils import MICRO_OVERRIDES, data_overrides

pytestmark = [pytest.mark.slow, pytest.mark.venv, pytest.mark.multiprocess]

REPO = pathlib.Path(__file__).resolve().parents[1]


def _sh(cmd, cwd, env=None, timeout=timeout_s(600)):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def _fresh_venv_with_wheel(tmp_path: pathlib.Path) -> pathlib.Path:
    dist, src = tmp_path / "dist", tmp_path / "src"
    # Build from a clean copy: an in-tree build/ folder may hold modules deleted since.
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                             "runs", "out", "fixtures"))
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, src], tmp_path)
    (wheel,) = dist.glob("grm_jax-*.whl")
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    py = venv / "bin" / "python"
    site = pathlib.Path(_sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    # Dependencies from the test environment (a .pth line adds a path; .pth files inside it,
    # such as this checkout's editable-install hook, are not processed).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _sh([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel], tmp_path)
    return venv


def _write_frames(folder: pathlib.Path, n: int = 6) -> str:
    folder.mkdir()
    for i in range(n):
        img = np.full((120, 160, 3), 90, np.uint8)
        cv2.rectangle(img, (40 + 3 * i, 40), (70 + 3 * i, 75), (20, 200, 240), -1)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img)
    return "40,40,30,35"


def test_wheel_install_trains_and_tracks_outside_checkout(tmp_path):
    venv = _fresh_venv_with_wheel(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", PYTHONNOUSERSITE="1")
    where = _sh([venv / "bin" / "python", "-c", "import grm_jax, grm_jax.configs; print(grm_jax.__file__)"], outside, env)
    assert str(venv) in where and str(REPO) not in where

    cli = venv / "bin" / "grm-jax"
    _sh([cli, "--config", "grm_tiny_cpu", "--workdir", "run", *data_overrides(tmp_path / "sample"),
         "--config.train.max_steps=2", "--config.train.batch_size=2", *MICRO_OVERRIDES], outside, env)
    init_box = _write_frames(outside / "clip")
    _sh([cli, "--config", "grm_tiny_cpu", "--mode=track", "--checkpoint", "run", "--video", "clip",
         "--init_box", init_box, "--workdir", "track"], outside, env)
    boxes = np.loadtxt(outside / "track" / "boxes.txt", delimiter=",")
    assert boxes.shape == (6, 4) and np.isfinite(boxes).all()
