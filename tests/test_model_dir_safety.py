"""Hostile model directories (issue 17.5, 18.6): weights.sha256 naming paths outside variables/,
symlinks / FIFOs / devices under variables/, an empty variables/. ``load_model`` hashes only
regular files inside the directory and refuses the rest with one error naming the entry; cases
that could block (a FIFO, /dev/zero) run in a child process with a timeout."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from export_utils import make_model_dir
from grm_jax import load_model
from grm_jax.errors import CheckpointError
from conftest import timeout_s
from train_utils import REPO, subprocess_env


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model") / "grm_tiny")


def _copy(good_dir, tmp_path, name="m"):
    return shutil.copytree(good_dir, tmp_path / name)


def _relist(model, extra_lines=()):
    """Rewrites weights.sha256 for what variables/ now holds (an attacker who can write the
    directory can do this too), plus ``extra_lines``."""
    lines = [f"{hashlib.sha256((model / f).read_bytes()).hexdigest()}  {f}"
             for f in ("model_config.json", "track_config.json") if (model / f).is_file()]
    for root, _, files in os.walk(model / "variables"):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                lines.append(f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()}  {os.path.relpath(p, model)}")
    (model / "weights.sha256").write_text("\n".join(sorted(lines) + list(extra_lines)) + "\n")


def _first_file(model):
    return next(p for p in sorted((model / "variables").rglob("*")) if p.is_file())


@pytest.mark.parametrize("name", ["variables/../model_config.json", "../outside.bin", "variables/../../outside.bin",
                                  "/etc/passwd", "variables//d", "variables/./d"])
def test_manifest_paths_outside_variables_are_refused(good_dir, tmp_path, name):
    model = _copy(good_dir, tmp_path)
    (tmp_path / "outside.bin").write_bytes(b"x")
    digest = hashlib.sha256(b"x").hexdigest()
    with open(model / "weights.sha256", "a") as f:
        f.write(f"{digest}  {name}\n")
    with pytest.raises(CheckpointError, match=r"weights\.sha256: line \d+ (names .*which is not a file under "
                                              r"variables/|is not)") as info:
        load_model(model)
    assert str(model) in str(info.value)


def test_symlink_pointing_outside_is_refused(good_dir, tmp_path):
    model = _copy(good_dir, tmp_path)
    victim = _first_file(model)
    outside = tmp_path / "outside.bin"
    shutil.copy(victim, outside)
    victim.unlink()
    victim.symlink_to(outside)  # same bytes, same sha256: only the link itself is wrong
    _relist(model, [f"{hashlib.sha256(outside.read_bytes()).hexdigest()}  {victim.relative_to(model).as_posix()}"])
    with pytest.raises(CheckpointError, match=rf"{victim.relative_to(model).as_posix()} is a symlink pointing to "
                                              rf"{outside}; a model directory holds only folders and regular files"):
        load_model(model)


def test_variables_folder_symlink_is_refused(good_dir, tmp_path):
    model = _copy(good_dir, tmp_path)
    shutil.move(model / "variables", tmp_path / "elsewhere")
    (model / "variables").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match=r"variables is a symlink; a model directory holds only"):
        load_model(model)


def test_empty_variables_is_refused(good_dir, tmp_path):
    model = _copy(good_dir, tmp_path)
    shutil.rmtree(model / "variables")
    (model / "variables").mkdir()
    (model / "weights.sha256").write_text("")
    with pytest.raises(CheckpointError, match=r"variables/ holds no weight files"):
        load_model(model)


CHILD = r"""
import json, sys
from grm_jax import load_model
for model in sys.argv[1:]:
    try:
        load_model(model)
        print(json.dumps({"model": model, "error": None}), flush=True)
    except Exception as exc:
        print(json.dumps({"model": model, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def test_fifo_and_dev_zero_never_block(good_dir, tmp_path):
    """A FIFO or a /dev/zero symlink under variables/, listed in weights.sha256, and a manifest that
    is itself a FIFO: each refused at once, naming the entry (a reader would block or never end)."""
    cases = {}
    fifo = _copy(good_dir, tmp_path, "fifo")
    os.mkfifo(fifo / "variables" / "pipe")
    _relist(fifo, ["0" * 64 + "  variables/pipe"])
    cases[str(fifo)] = "variables/pipe is a FIFO"
    zero = _copy(good_dir, tmp_path, "zero")
    (zero / "variables" / "zeros").symlink_to("/dev/zero")
    _relist(zero, ["0" * 64 + "  variables/zeros"])
    cases[str(zero)] = "variables/zeros is a symlink pointing to /dev/zero"
    manifest_fifo = _copy(good_dir, tmp_path, "manifest_fifo")
    (manifest_fifo / "weights.sha256").unlink()
    os.mkfifo(manifest_fifo / "weights.sha256")
    cases[str(manifest_fifo)] = "no weights manifest"
    run = subprocess.run([sys.executable, "-c", CHILD, *cases], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout_s(300), env=subprocess_env())
    assert run.returncode == 0, run.stderr[-3000:]
    results = {r["model"]: r["error"] for r in map(json.loads, run.stdout.splitlines())}
    for model, message in cases.items():
        assert results[model] and results[model].startswith("CheckpointError: ") and message in results[model], \
            (model, results[model])
