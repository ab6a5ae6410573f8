"""One run per work directory: the lock file training and evaluation take before writing.

Training takes ``<workdir>/train.lock``, evaluation ``<workdir>/evaluate.lock``
(:data:`TRAIN_LOCK`, :data:`EVALUATE_LOCK`). The lock is a small JSON object
``{"host", "pid", "started"}`` of the process that writes into the workdir. It is created
atomically (written under a temporary name, then hard-linked into place, which fails when the
file exists), so a reader never sees a half-written lock. A second run finds the file and is
refused with a :class:`grm_jax.errors.WorkdirError` naming the holder. A lock is *stale*, and is
taken over with a message, when its host is this machine and its pid is no longer running (a run
killed with SIGKILL or by a preemption cannot remove its lock), or when its pid is this very
process (a restarted container re-using the pid). A lock held by another host cannot be checked
from here and is always refused; the error says which file to delete once that run is gone.

In a multi-host run only process 0 takes the lock.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import socket
import time
from typing import Callable

from grm_jax.errors import WorkdirError

__all__ = ["EVALUATE_LOCK", "TRAIN_LOCK", "WorkdirLock"]

TRAIN_LOCK = "train.lock"
EVALUATE_LOCK = "evaluate.lock"


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
    def acquire(cls, workdir: str | os.PathLike, say: Callable[[str], None] = print,
                file_name: str = TRAIN_LOCK, job: str = "training") -> "WorkdirLock":
        """Takes ``<workdir>/<file_name>`` or raises WorkdirError naming the run that holds it.
        job: what the lock guards, for the messages ('training', 'evaluation')."""
        path = pathlib.Path(workdir) / file_name
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
                raise WorkdirError(f"{path.parent} is in use by another {job} run: {_holder_text(holder)}",
                                   hint=f"{hint}; or use another --workdir")
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
    raise WorkdirError(f"{path}: not a grm-jax lock file ({text[:80]!r})",
                       hint=f"delete {path} if no run is using {path.parent}")


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
