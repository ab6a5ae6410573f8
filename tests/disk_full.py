"""A folder whose disk can be filled on demand, for the disk-full tests (issue 17.4).

As root (CI containers, this machine) the folder is a small tmpfs mounted for the test, and
``fill()`` writes a filler file until the kernel answers ENOSPC: the real fault, for this process
and for subprocesses. Where mounting is not permitted, the same tests run with an injected fault
instead (documented in the README's "Bad input" table): ``fill()`` makes ``os.fsync`` (called by
every atomic write, :mod:`grm_jax.io_utils`) fail with ENOSPC in this process, and
``injected`` is True so that subprocess-only tests can say which mode ran.
"""
import contextlib
import errno
import os
import pathlib
import subprocess


class SmallDisk:
    def __init__(self, path: pathlib.Path, mounted: bool, monkeypatch):
        self.path, self.mounted, self._mp = path, mounted, monkeypatch
        self.injected = not mounted
        self._filler = path / ".filler"

    def fill(self) -> None:
        if self.mounted:
            for size in (1 << 16, 512):  # big blocks, then the last partial page
                with contextlib.suppress(OSError), open(self._filler, "ab", buffering=0) as fh:
                    while True:
                        fh.write(b"\0" * size)
            return

        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self._mp.setattr(os, "fsync", no_space)

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)
        self._mp.undo()


@contextlib.contextmanager
def small_disk(path: pathlib.Path, monkeypatch, size: str = "16m"):
    """Yields a SmallDisk at ``path`` (created); unmounts afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    try:
        yield SmallDisk(path, mounted, monkeypatch)
    finally:
        monkeypatch.undo()
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60)
