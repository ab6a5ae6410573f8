"""Cached virtual environments for tools whose pins clash with the test environment.

``overlay_venv(name, requirements)`` returns the Python of a venv that sees every package of the
running environment (a ``.pth`` file adds its site-packages after the venv's own) and has
``requirements`` installed on top. pip installs only what is missing or pinned differently there
(e.g. jax2onnx's orbax-checkpoint < 0.11.37, vot-toolkit's opencv-python) and never touches the
running environment. The venv is built once per (requirements, Python, environment) under
``$GRM_TEST_VENVS`` (default ``~/.cache/grm_jax/test-venvs``), under a file lock so parallel test
workers build it once, and is marked complete only after pip succeeded.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

COMPLETE = ".complete"


def extra_requirements(extra: str, distribution: str = "grm-jax") -> list[str]:
    """The requirement strings of ``distribution``'s extra ``extra`` (from its installed metadata,
    i.e. setup.py's extras_require), markers removed."""
    from packaging.requirements import Requirement  # noqa: PLC0415

    found = []
    for text in importlib.metadata.requires(distribution) or []:
        req = Requirement(text)
        if req.marker is not None and req.marker.evaluate({"extra": extra}):
            req.marker = None
            found.append(str(req))
    if not found:
        raise LookupError(f"{distribution} has no extra {extra!r} (reinstall it: pip install -e .)")
    return found


def _root() -> Path:
    return Path(os.environ.get("GRM_TEST_VENVS", Path.home() / ".cache" / "grm_jax" / "test-venvs"))


def _parent_site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def overlay_venv(name: str, requirements: list[str], timeout: float = 1200) -> Path:
    """The Python executable of the cached overlay venv ``name`` with ``requirements`` installed."""
    parents = _parent_site_dirs()
    key = hashlib.sha256(repr((sorted(requirements), sys.version, parents)).encode()).hexdigest()[:12]
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"{name}-{key}"
    python = venv / "bin" / "python"
    with open(root / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / COMPLETE).is_file():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
        Path(site, "_grm_parent_env.pth").write_text(lines)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} into {venv} failed:\n{proc.stderr[-3000:]}")
        (venv / COMPLETE).write_text(" ".join(requirements) + "\n")
    return python


def cached_jax_env(python: Path, **extra: str) -> dict:
    """os.environ for a subprocess of the venv of ``python``, with JAX's persistent compilation
    cache in that venv (every compile cached), so repeated runs skip the compiles (jax2onnx's
    plugin imports alone compile ~80 small functions)."""
    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(Path(python).parent.parent / "jax-cache"),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                **extra)


# The overlay venvs the tests use: (venv name, grm-jax extra installed into it).
TEST_OVERLAYS = (("vot-toolkit", "vot"), ("onnx", "onnx"))


def overlay_for_extra(extra: str) -> Path:
    """The Python of the overlay venv of :data:`TEST_OVERLAYS` holding grm-jax's ``extra``."""
    (name,) = [n for n, e in TEST_OVERLAYS if e == extra]
    return overlay_venv(name, extra_requirements(extra))


def build_test_overlays() -> None:
    """Builds (or finds) every overlay venv of :data:`TEST_OVERLAYS`: the install step of the README's
    test command runs this, so that the tests themselves need no network."""
    for _, extra in TEST_OVERLAYS:
        print(f"[{extra}] extra: {overlay_for_extra(extra).parent.parent}")


if __name__ == "__main__":
    build_test_overlays()
