"""One training run per work directory, and the files a run writes into it at the start.

The lock is the file ``<workdir>/train.lock`` (name in :mod:`grm_jax.checkpoint`), a small JSON
object ``{"host", "pid", "started"}`` of the process that trains into the workdir. It is created
atomically (written under a temporary name, then hard-linked into place, which fails when the
file exists), so a reader never sees a half-written lock. A second run finds the file and is
refused with a :class:`grm_jax.errors.WorkdirError` naming the holder. A lock is *stale*, and is
taken over with a message, when its host is this machine and its pid is no longer running (a run
killed with SIGKILL or by a preemption cannot remove its lock), or when its pid is this very
process (a restarted container re-using the pid). A lock held by another host cannot be checked
from here and is always refused; the error says which file to delete once that run is gone.

In a multi-host run only process 0 takes the lock (see :func:`grm_jax.train.loop.run_train`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import socket
import time
from typing import Callable

from grm_jax import checkpoint as ckpt_lib
from grm_jax.errors import WorkdirError
from grm_jax.io_utils import atomic_write_text
from grm_jax.model.config import ModelConfig
from grm_jax.run_config import RunConfig

__all__ = ["WorkdirLock", "write_run_files"]


def _holder_text(holder: dict) -> str:
    return f"pid {holder.get('pid')} on host {holder.get('host')!r} (started {holder.get('started', '?')})"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


@dataclasses.dataclass
class WorkdirLock:
    """A held lock; release it with :meth:`release` (or use it as a context manager)."""

    path: pathlib.Path
    holder: dict

    @classmethod
    def acquire(cls, workdir: str | os.PathLike, say: Callable[[str], None] = print) -> "WorkdirLock":
        """Takes ``<workdir>/train.lock`` or raises WorkdirError naming the run that holds it."""
        path = pathlib.Path(workdir) / ckpt_lib.LOCK_FILE
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            if _create_exclusive(path, me):
                return cls(path, me)
            holder = _read_lock(path)
            if holder is None:  # removed meanwhile: try again
                continue
            why = _stale_reason(holder, me)
            if why is None:
                hint = (f"wait for it to finish, or delete {path} if that run is no longer running"
                        if holder.get("host") != me["host"] else "wait for it to finish or stop it")
                raise WorkdirError(f"{path.parent} is in use by another training run: {_holder_text(holder)}",
                                   hint=f"{hint}; or train into another --workdir")
            if _remove_if_unchanged(path, holder):
                say(f"taking over the stale lock {path}: {_holder_text(holder)} {why}")
        raise WorkdirError(f"{path}: could not take the workdir lock (other runs keep taking it)")

    def release(self) -> None:
        """Removes the lock file if it is still ours."""
        try:
            ours = _read_lock(self.path) == self.holder
        except WorkdirError:  # replaced by something else: not ours to remove
            ours = False
        if ours:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "WorkdirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _create_exclusive(path: pathlib.Path, holder: dict) -> bool:
    """Atomically creates ``path`` holding ``holder``; False when it exists already."""
    tmp = path.with_name(f".{path.name}.{holder['pid']}.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(holder) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: exclusive create, then write
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(holder) + "\n")
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _read_lock(path: pathlib.Path) -> dict | None:
    """The holder written in the lock file; None when there is no lock file. A file that is not
    a lock (edited by hand, a file system error) is refused with WorkdirError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
        if isinstance(holder, dict) and {"host", "pid"} <= holder.keys():
            return holder
    except json.JSONDecodeError:
        pass
    raise WorkdirError(f"{path}: not a training lock file ({text[:80]!r})",
                       hint=f"delete {path} if no run is training into {path.parent}")


def _stale_reason(holder: dict, me: dict) -> str | None:
    """Why ``holder`` no longer holds the lock, or None when it may still be running."""
    if holder.get("host") != me["host"]:
        return None
    pid = int(holder.get("pid", -1))
    if pid == me["pid"]:
        return "(this process id: left by an earlier run)"
    if not _pid_running(pid):
        return "(that process is no longer running)"
    return None


def _remove_if_unchanged(path: pathlib.Path, holder: dict) -> bool:
    """Removes the stale lock ``path`` unless another run replaced it meanwhile. The lock is first
    renamed to a name of our own (atomic), so two runs never both remove it."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        if _read_lock(aside) == holder:
            return True
        os.link(aside, path)  # a fresh lock of another run: put it back (fails if yet another exists)
        return False
    except (OSError, WorkdirError):
        return False
    finally:
        aside.unlink(missing_ok=True)


def write_run_files(workdir: pathlib.Path, run: RunConfig, model_config: ModelConfig) -> None:
    """Writes ``model_config.json``, ``track_config.json`` (the run's track section) and ``config.json``; refuses a workdir whose checkpoints were
    trained with another model (WorkdirError naming the differing fields)."""
    existing = workdir / ckpt_lib.CONFIG_FILE
    if existing.is_file() and ckpt_lib.checkpoint_steps(workdir):
        old = ckpt_lib.read_model_config(workdir)
        if old != model_config:
            diff = [f"{f.name}: {getattr(old, f.name)!r} -> {getattr(model_config, f.name)!r}"
                    for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(model_config, f.name)]
            raise WorkdirError(f"{workdir} holds checkpoints of another model ({existing}: {'; '.join(diff)})",
                               hint="train into a new --workdir, or restore the model settings of that run")
    ckpt_lib.write_model_config(workdir, model_config, run.track)
    text = json.dumps({"name": run.name, **run.to_dict()}, indent=2, sort_keys=True) + "\n"
    atomic_write_text(workdir / ckpt_lib.RUN_CONFIG_FILE, text)
