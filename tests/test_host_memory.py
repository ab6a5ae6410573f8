"""grm_jax.host_memory: freed heap memory is reused (no page faults on the second pass over a
large buffer), once per process, switched off by GRM_KEEP_FREED_MEMORY=0; the glibc settings
are applied by launch.main before anything else."""
import json
import os
import platform
import subprocess
import sys

import pytest

from grm_jax import host_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates (glibc malloc, as XLA:CPU's buffers are; numpy would ask for huge pages itself), writes
# and frees a 256 MiB block twice; prints the minor page faults of the second pass (a fresh mmap
# faults once per 4 KiB page: about 65,000; reused heap memory: none).
_PROBE = """
import ctypes, json, resource
from grm_jax.host_memory import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def touch(size=256 << 20):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(switch: str) -> dict:
    env = {**os.environ, host_memory.ENV_SWITCH: switch}
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's (mallopt); elsewhere it is a no-op")
def test_freed_memory_is_reused_without_page_faults():
    on, off = _probe("1"), _probe("0")
    assert on["applied"] is True and off["applied"] is False
    assert on["faults"] <= off["faults"]
    if not _huge_pages_always():  # else the kernel backs fresh mmaps with 2 MiB pages: few faults either way
        assert off["faults"] > 30_000  # 256 MiB of fresh 4 KiB pages
        assert on["faults"] < off["faults"] / 20


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as f:
            return "[always]" in f.read()
    except OSError:
        return False


def test_once_per_process_and_switch(monkeypatch):
    applied = host_memory.keep_freed_memory()
    assert applied == (GLIBC and os.environ.get(host_memory.ENV_SWITCH, "1").strip() != "0")
    assert host_memory.keep_freed_memory() == applied  # cached for this process
    monkeypatch.setenv(host_memory.ENV_SWITCH, "0")
    assert host_memory._apply_mallopt() is False


def test_launch_applies_it_before_the_command(monkeypatch):
    import launch

    order = []
    monkeypatch.setattr(launch, "keep_freed_memory", lambda: order.append("memory") or True)
    monkeypatch.setattr(launch, "cli_main", lambda argv, train_parts: order.append("command") or 0)
    assert launch.main(["--mode=score"]) == 0
    assert order == ["memory", "command"]
