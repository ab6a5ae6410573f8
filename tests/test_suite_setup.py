"""The test suite's own rules (tests/conftest.py): one persistent compilation cache per run shared
with subprocesses, a way to compile from scratch, the real-sequence rule under CI, the markers."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax import monitoring

import conftest
from grm_jax.compile_timer import CompileTimer

# Compiles one small function whose HLO no other test has (its constant) and prints what jax's
# persistent cache did: HIT (found), MISS (looked, compiled, wrote) or OFF (not consulted).
PROBE = """
import jax, numpy as np
from jax import monitoring
events = []
monitoring.register_event_listener(lambda event, **_: events.append(event))
jax.jit(lambda x: x * {scale} + 0.5)(np.ones(5, np.float32)).block_until_ready()
used = "/jax/compilation_cache/compile_requests_use_cache" in events
print("HIT" if "/jax/compilation_cache/cache_hits" in events else "MISS" if used else "OFF")
"""


def _probe(scale, env):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(scale=scale)], env=env, capture_output=True,
                          text=True, timeout=conftest.timeout_s(120))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.multiprocess
def test_run_cache_is_shared_with_subprocesses():
    cache = os.environ[conftest.RUN_CACHE_VAR]
    assert jax.config.jax_compilation_cache_dir == cache == os.environ["JAX_COMPILATION_CACHE_DIR"]
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    scale = 1.0 + (os.getpid() % 9973) / 1e4  # unique to this test process: the first compile misses
    jax.jit(lambda x: x * scale + 0.5)(np.ones(5, np.float32)).block_until_ready()  # writes the entry
    assert _probe(scale, dict(os.environ)) == "HIT"  # a subprocess reads what this process compiled
    assert _probe(scale, conftest.no_compile_cache_env()) == "OFF"  # the opt-out compiles afresh


def test_fresh_compile_cache_fixture_compiles_from_scratch(fresh_compile_cache):
    events = []
    listener = lambda event, **_: events.append(event)  # noqa: E731
    monitoring.register_event_listener(listener)
    try:
        with CompileTimer() as timer:
            jax.jit(lambda x: x * 3.25 - 1.0)(np.ones(3, np.float32)).block_until_ready()
    finally:
        monitoring.unregister_event_listener(listener)
    assert timer.seconds > 0
    assert "/jax/compilation_cache/task_disabled_cache" in events
    assert "/jax/compilation_cache/compile_requests_use_cache" not in events  # neither read nor written


def test_real_sequences_fail_under_ci_and_skip_elsewhere(tmp_path):
    missing = tmp_path / "no_sequences"
    with pytest.raises(pytest.fail.Exception, match="CI=true: tests that need them fail instead of skipping"):
        conftest.require_real_sequences(missing, {"CI": "true"})
    with pytest.raises(pytest.skip.Exception, match="set GRM_REAL_SEQUENCES"):
        conftest.require_real_sequences(missing, {"CI": "false"})
    with pytest.raises(pytest.skip.Exception):
        conftest.require_real_sequences(missing, {})
    assert conftest.require_real_sequences(tmp_path, {"CI": "true"}) == tmp_path


def test_tests_using_real_sequences_are_marked_real_data():
    class Item:
        def __init__(self, fixturenames):
            self.fixturenames, self.marks = fixturenames, []

        def add_marker(self, mark):
            self.marks.append(mark.name if hasattr(mark, "name") else mark.mark.name)

    uses, other = Item(("tmp_path", "real_sequences")), Item(("tmp_path",))
    conftest.pytest_collection_modifyitems(None, [uses, other])
    assert uses.marks == ["real_data"] and other.marks == []


def test_subprocess_time_limits_scale():
    assert conftest.TIMEOUT_SCALE >= 1
    assert conftest.timeout_s(300) == 300 * conftest.TIMEOUT_SCALE
