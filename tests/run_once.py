"""Expensive test fixtures (a trained workdir, a saved model) built once per pytest run, also when
pytest-xdist runs the tests in several worker processes.

The first process that asks for a fixture builds it in a folder of the run's shared temporary
root, holding an exclusive ``fcntl.flock`` on a lock file beside it; a process that asks meanwhile
waits on the lock, then finds the finished folder and uses it. A folder counts as finished only
once its build returned (a ``.built`` mark written last), so a build that raised is redone by the
next process that asks, from an empty folder. Users must treat the folder as read-only (copy it
before changing it): other tests, in other processes, read it too.
"""
import fcntl
import os
import pathlib
import shutil
from typing import Callable

BUILT_MARK = ".built"


def run_root(tmp_path_factory) -> pathlib.Path:
    """The temporary folder that every process of this pytest run shares: under xdist the
    controller's base folder (each worker's own base folder, ``popen-gwN``, is inside it),
    otherwise pytest's base folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(tmp_path_factory, name: str, build: Callable[[pathlib.Path], object]) -> pathlib.Path:
    """The folder ``<run root>/once-<name>``, filled by ``build(folder)`` by the first process of the
    run that asks (the others wait for it and reuse the folder)."""
    root = run_root(tmp_path_factory)
    folder = root / f"once-{name}"
    with open(root / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if build raises
        if not (folder / BUILT_MARK).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # what a build that raised left behind
            folder.mkdir()
            build(folder)
            (folder / BUILT_MARK).touch()
    return folder
