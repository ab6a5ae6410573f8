"""``python -m convert_weights grm SRC DST`` into an existing good model directory (issue 18.3):
the new model is written beside DST and swapped in atomically. A SIGKILL mid-conversion, or at
the swap point, leaves DST loadable (old or new, never broken); a successful run leaves no
temporary folder beside DST."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FIXTURES, timeout_s
from export_utils import make_model_dir
from grm_jax import load_model
from train_utils import REPO, subprocess_env

NORM = ("params", "backbone", "norm", "scale")


def _norm_scale(model_dir):
    _, variables = load_model(model_dir)
    leaf = variables
    for key in NORM:
        leaf = leaf[key]
    return np.asarray(leaf)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """(old model directory to copy from, new SRC whose backbone.norm.weight differs, old scale)."""
    root = tmp_path_factory.mktemp("atomic")
    old = make_model_dir(root / "old")
    state = dict(np.load(FIXTURES / "grm_tiny" / "state_dict.npz"))
    state["backbone.norm.weight"] = state["backbone.norm.weight"] + 1.0
    np.savez(root / "new.npz", **state)
    return old, root / "new.npz", _norm_scale(old)


def _fresh_dst(sources, tmp_path):
    import shutil

    dst = tmp_path / "models" / "grm"
    shutil.copytree(sources[0], dst)
    return dst


def _side_folders(dst):
    return sorted(p.name for p in dst.parent.iterdir() if p.name != dst.name)


def _convert(src, dst, tmp_path, prelude=""):
    code = prelude + "import sys\nfrom convert_weights.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, "grm", str(src), str(dst)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout_s(300), env=subprocess_env())


def test_sigkill_mid_conversion_keeps_the_old_model(sources, tmp_path):
    _, src, old_scale = sources
    dst = _fresh_dst(sources, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "convert_weights", "grm", str(src), str(dst)], cwd=REPO,
                            env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s(240)
        while not any(".tmp-" in n for n in _side_folders(dst)) and proc.poll() is None:
            assert time.monotonic() < deadline, "the conversion never started writing"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=timeout_s(60))
    np.testing.assert_array_equal(_norm_scale(dst), old_scale)  # old model, intact and verified
    ok = _convert(src, dst, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    np.testing.assert_array_equal(_norm_scale(dst), old_scale + 1.0)
    assert _side_folders(dst) == []  # the killed run's folder is gone too
    assert sorted(os.listdir(dst)) == ["model_config.json", "track_config.json", "variables", "weights.sha256"]


KILL_BEFORE_SWAP = """
import os, signal
import grm_jax.io_utils as io_utils
io_utils._swap_in = lambda new, target: os.kill(os.getpid(), signal.SIGKILL)
"""

KILL_AFTER_EXCHANGE = """
import os, signal
import grm_jax.io_utils as io_utils
_exchange = io_utils._exchange
def _exchange_then_die(a, b):
    assert _exchange(a, b)
    os.kill(os.getpid(), signal.SIGKILL)
io_utils._exchange = _exchange_then_die
"""


@pytest.mark.parametrize("fault, expect_new", [(KILL_BEFORE_SWAP, False), (KILL_AFTER_EXCHANGE, True)])
def test_kill_at_the_swap_point(sources, tmp_path, fault, expect_new):
    _, src, old_scale = sources
    dst = _fresh_dst(sources, tmp_path)
    killed = _convert(src, dst, tmp_path, prelude=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    np.testing.assert_array_equal(_norm_scale(dst), old_scale + 1.0 if expect_new else old_scale)
    assert len(_side_folders(dst)) == 1  # the killed run's folder, until the next run
    ok = _convert(src, dst, tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    np.testing.assert_array_equal(_norm_scale(dst), old_scale + 1.0)
    assert _side_folders(dst) == []


def test_a_folder_with_other_files_is_not_replaced(sources, tmp_path):
    _, src, _ = sources
    dst = tmp_path / "my_files"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    run = _convert(src, dst, tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"error: {dst}: holds ['notes.txt'] besides a model directory's files" in run.stderr
    assert os.listdir(dst) == ["notes.txt"] and (dst / "notes.txt").read_text() == "mine"
    assert _side_folders(dst) == []
