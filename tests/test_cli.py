"""The command line: help texts exit 0, user errors print one line (no traceback)."""
import subprocess
import sys
import pathlib

import pytest

from conftest import timeout_s

pytestmark = [pytest.mark.multiprocess]

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout_s(120))


def test_help_lists_modes_and_examples():
    out = _run("--help")
    assert out.returncode == 0
    for word in ("train", "evaluate", "track", "score", "--config.data.roots.got10k", "--checkpoint"):
        assert word in out.stdout


def test_unknown_key_is_one_line():
    out = _run("--config", "configs/grm_got.py", "--config.train.lrr=1")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "unknown config key 'train.lrr'" in out.stderr and "train.lr" in out.stderr


def test_missing_required_flag_is_one_line():
    out = _run("--config", "grm_tiny_cpu", "--mode=evaluate")
    assert out.returncode == 2
    assert "--checkpoint is required" in out.stderr and "Traceback" not in out.stderr


def test_convert_weights_help():
    out = subprocess.run([sys.executable, "-m", "convert_weights", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=timeout_s(120))
    assert out.returncode == 0
    assert "grm" in out.stdout and "mae" in out.stdout
