"""The one place that writes output files: atomic replacement and the output-folder check.

Every result, plot, JSON file, video and config grm-jax writes goes through :class:`AtomicFiles`
(or its one-file shortcut :func:`atomic_write_bytes`):

* each file is written under a temporary name in its target folder, then moved onto the target
  with ``os.replace``, so a reader never sees a half-written file and a crash leaves the old file;
* files written together (``boxes.txt`` + ``tracked.mp4``) are moved into place only once all of
  them are complete: a failed run replaces none of them;
* the temporary file is created with mode ``0o666`` filtered by the process umask (like ``open``),
  not ``tempfile.mkstemp``'s private ``0o600``, so results are readable as the umask allows;
* a full disk (ENOSPC / EDQUOT) while writing becomes one WorkdirError naming the folder and the
  files; the temporary files are removed, so the folder holds only the complete files of before.

:func:`path_inside` checks that a file name built from data (a sequence name) stays inside its
output folder.

:func:`ensure_writable_dir` is called by the modes before any work, so an unusable output folder
fails in the first second instead of after a whole sequence or benchmark was tracked.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import shutil
from pathlib import Path

from grm_jax.errors import WorkdirError

__all__ = ["AtomicFiles", "atomic_write_bytes", "atomic_write_text", "disk_full_error", "ensure_writable_dir",
           "is_disk_full", "path_inside", "replaced_directory"]

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException) -> bool:
    """True when ``err`` or an exception it was raised from / during is ENOSPC or EDQUOT."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            return True
        if "No space left on device" in str(err) or "Disk quota exceeded" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_error(folder, what: str) -> WorkdirError:
    """The one-line error for a full disk (or quota) while writing ``what`` into ``folder``."""
    return WorkdirError(f"{folder}: no space left on the device (disk full or quota reached) while writing {what}; "
                        "nothing was half-written and the files written before are intact",
                        hint="free some space (or choose another output folder) and run the same command again")


def _create_temp(target: Path, keep_extension: bool) -> Path:
    """Creates an empty hidden file beside ``target`` (mode 0o666 & ~umask) and returns its path:
    ``.<name>.<random>.tmp`` or, with ``keep_extension``, ``.<stem>.<random>.tmp<suffix>`` (for
    writers that choose the file format from the name, e.g. video writers)."""
    for _ in range(100):
        token = secrets.token_hex(4)
        name = (f".{target.stem}.{token}.tmp{target.suffix}" if keep_extension
                else f".{target.name}.{token}.tmp")
        tmp = target.with_name(name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {target}")  # pragma: no cover


class AtomicFiles:
    """Files written under temporary names and moved onto their targets together.

        with AtomicFiles() as out:
            tmp_video = out.path(workdir / "tracked.mp4", keep_extension=True)  # a writer opens it
            ...
            out.write_bytes(workdir / "boxes.txt", text.encode())
        # normal exit: every target replaced (os.replace); exception: none, temporaries removed

    Targets' folders are created when missing. ``commit()`` may also be called explicitly.
    """

    def __init__(self):
        self._pending: list[tuple[Path, Path]] = []  # (temporary, target)

    def path(self, target, keep_extension: bool = False) -> Path:
        """A new temporary file (empty, created now) that becomes ``target`` at commit."""
        target = Path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _create_temp(target, keep_extension)
        except OSError as err:
            if is_disk_full(err):
                raise disk_full_error(target.parent, target.name) from err
            raise
        self._pending.append((tmp, target))
        return tmp

    def write_bytes(self, target, data: bytes) -> Path:
        """Writes ``data`` (flushed to disk) to a temporary file that becomes ``target`` at commit."""
        tmp = self.path(target)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def write_text(self, target, text: str) -> Path:
        return self.write_bytes(target, text.encode("utf-8"))

    def commit(self) -> list[Path]:
        """Moves every temporary file onto its target (in the order they were added); returns the targets."""
        done = []
        for tmp, target in self._pending:
            os.replace(tmp, target)
            done.append(target)
        self._pending.clear()
        return done

    def discard(self) -> None:
        """Removes the temporary files not yet committed."""
        for tmp, _ in self._pending:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        self._pending.clear()

    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        targets = [target for _, target in self._pending]
        if exc_type is None:
            try:
                self.commit()
            except OSError as err:
                self.discard()
                if is_disk_full(err) and targets:
                    raise disk_full_error(targets[0].parent, ", ".join(t.name for t in targets)) from err
                raise
            finally:
                self.discard()
        else:
            self.discard()
            if is_disk_full(exc) and targets:  # ENOSPC while writing a file: name the folder
                raise disk_full_error(targets[0].parent, ", ".join(t.name for t in targets)) from exc


def atomic_write_bytes(path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (see the module doc); creates the folder. Returns the path."""
    with AtomicFiles() as out:
        out.write_bytes(path, data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def path_inside(folder, *parts) -> Path:
    """``folder/part/...``, checked to lie inside ``folder`` once symbolic links and ``..`` are
    resolved (the last part itself is not followed: the atomic writers replace a link, never write
    through it). WorkdirError naming the path otherwise. Every file name built from data (sequence
    names) goes through this before anything is written or deleted."""
    target = Path(folder, *parts)
    base = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(target.parent)) / target.name
    if target.name in ("", ".", "..") or not real.is_relative_to(base) or real == base:
        raise WorkdirError(f"{target}: refused to write outside the output folder {folder}",
                           hint="a sequence name or file name must be a plain name")
    return target


def ensure_writable_dir(path, what: str = "--workdir") -> Path:
    """Creates the folder ``path`` if needed and checks that a file can be created in it (by
    creating and removing one: permission bits, ACLs, read-only mounts and quotas all count).
    Returns the path; WorkdirError naming the folder (and ``what`` it is) otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"{what} {path}: exists and is not a folder", hint="choose another output folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = _create_temp(path / "write_probe", keep_extension=False)
        probe.unlink()
    except OSError as err:
        raise WorkdirError(f"{what} {path}: cannot write there ({err.strerror or err})",
                           hint="choose a folder you can write to, or fix its permissions") from None
    return path


# Folders written beside their target by replaced_directory: .<name>.tmp-<pid>-<hex> (being written,
# or the old contents after the swap) and .<name>.old-<pid>-<hex> (the old contents, fallback swap).
_SIDE_FOLDER = re.compile(r"^\.(?P<name>.+)\.(tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")
_RENAME_EXCHANGE = 2


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_side_folders(target: Path) -> None:
    """Removes folders a killed replaced_directory left beside ``target`` (their pid is gone)."""
    for entry in target.parent.iterdir():
        m = _SIDE_FOLDER.match(entry.name)
        if m and m["name"] == target.name and not _pid_alive(int(m["pid"])):
            shutil.rmtree(entry, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps the folders ``a`` and ``b`` (Linux renameat2 RENAME_EXCHANGE); False where
    the system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _swap_in(new: Path, target: Path) -> None:
    """Puts the folder ``new`` at ``target``; the old ``target`` (if any) is removed afterwards.
    A reader sees the old or the new folder, never a mix: one rename (no target or an empty one),
    else an atomic exchange, else (no renameat2) two renames with the old folder kept until the
    second is done."""
    try:
        os.rename(new, target)  # no target, or an empty folder
        return
    except OSError:
        if not target.exists():
            raise
    if _exchange(new, target):
        shutil.rmtree(new)  # now the old contents
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old)


@contextlib.contextmanager
def replaced_directory(target, allowed: frozenset[str] | None = None):
    """Writes a whole folder beside ``target``, then swaps it in atomically.

        with replaced_directory(dst, allowed={"a.json", "b"}) as tmp:
            ... write everything into tmp ...
        # success: dst holds exactly what was written (the old dst is removed);
        # exception or kill: dst is untouched (a killed run leaves .<name>.tmp-<pid>-<hex> beside
        # it, removed by the next run once that pid is gone)

    ``allowed``: the entries an existing ``target`` may hold; one holding anything else (e.g. a
    folder of the user's files given by mistake) is refused with WorkdirError before any work.
    A symlink ``target`` is followed: the folder it points to is replaced.
    """
    target = Path(os.path.realpath(Path(target).absolute()))
    if target.exists():
        if not target.is_dir():
            raise WorkdirError(f"{target}: exists and is not a folder", hint="choose another output folder")
        others = sorted(set(os.listdir(target)) - set(allowed)) if allowed is not None else []
        if others:
            raise WorkdirError(f"{target}: holds {others[:5]} besides a model directory's files; refusing to "
                               "replace it", hint="choose a new folder or remove those files")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_side_folders(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        _swap_in(tmp, target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, Exception) and is_disk_full(err):
            raise disk_full_error(target.parent, f"{target.name}/ (the previous one is intact)") from err
        raise
