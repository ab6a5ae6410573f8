"""The test suite's own rules (tests/conftest.py): one persistent compilation cache per run shared
with subprocesses, a way to compile from scratch, the real-sequence rule under CI, the markers; one
tiny model for the tests (tests/models.py); expensive fixtures built once per run (tests/run_once.py)."""
import ast
import concurrent.futures
import os
import pathlib
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest
from jax import monitoring

import conftest
import models
import run_once
from grm_jax.compile_timer import CompileTimer
from grm_jax.configuration import load_run_config

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


def _model_config_literals(path):
    """(line, text) of every ``ModelConfig(...)`` call in ``path`` outside a ``pytest.raises`` block."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, in_raises):
        if isinstance(node, ast.With) and any(
                isinstance(i.context_expr, ast.Call) and ast.unparse(i.context_expr.func) == "pytest.raises"
                for i in node.items):
            in_raises = True
        if (isinstance(node, ast.Call) and not in_raises
                and ast.unparse(node.func).rpartition(".")[2] == "ModelConfig"):
            found.append((node.lineno, ast.unparse(node)[:80]))
        for child in ast.iter_child_nodes(node):
            visit(child, in_raises)

    visit(tree, False)
    return found


def test_one_tiny_model_for_the_tests():
    """Networks built by tests come from tests/models.py (MICRO, MICRO.replace(...)) or from the
    converted fixture; no test file writes its own ModelConfig(...) (a check of a bad config inside
    ``pytest.raises`` aside)."""
    tests = pathlib.Path(__file__).parent
    literals = {p.name: found for p in sorted(tests.glob("*.py")) if p.name != "models.py"
                for found in [_model_config_literals(p)] if found}
    assert not literals, f"use tests/models.py's MICRO (or MICRO.replace(...)) instead: {literals}"
    assert _model_config_literals(tests / "models.py")  # the scan sees the one definition


@pytest.mark.parametrize("base", ["grm_tiny_cpu", "grm_got"])
def test_micro_overrides_give_the_micro_model(base):
    """launch.py runs and load_run_config get exactly MICRO from micro_overrides(), on any config."""
    assert load_run_config(base, models.micro_overrides(prefix="")).model == models.MICRO
    assert all(o.startswith("--config.model.") for o in models.micro_overrides())
    varied = models.MICRO.replace(search_size=320, template_size=128)
    assert load_run_config(base, models.micro_overrides(varied, prefix="")).model == varied


def _factory(base):
    return types.SimpleNamespace(getbasetemp=lambda: base)


def test_build_once_waits_for_the_first_builder(tmp_path, monkeypatch):
    """Two callers at once (each its own lock file description, as two processes have): one build,
    both get the finished folder; under xdist the folder is in the run's root, above the worker's."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    builds = []

    def build(folder):
        builds.append(folder)
        time.sleep(0.5)  # the second caller arrives while this one builds
        (folder / "weights").write_text("done")

    factory = _factory(tmp_path / "popen-gw0")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: run_once.build_once(factory, "model", build), range(2)))
    assert len(builds) == 1 and got == [tmp_path / "once-model"] * 2
    assert (got[0] / "weights").read_text() == "done" and (got[0] / run_once.BUILT_MARK).is_file()
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert run_once.run_root(factory) == tmp_path / "popen-gw0"  # plain pytest: its own base folder


def test_build_once_redoes_a_build_that_raised(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)

    def broken(folder):
        (folder / "half").write_text("x")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="killed mid-build"):
        run_once.build_once(_factory(tmp_path), "w", broken)
    folder = run_once.build_once(_factory(tmp_path), "w", lambda f: (f / "full").write_text("y"))
    assert sorted(p.name for p in folder.iterdir()) == [run_once.BUILT_MARK, "full"]


# Four tests over two xdist workers share one session fixture built with build_once.
XDIST_RUN = """
import os, pathlib, sys, time
import pytest
sys.path.insert(0, {tests!r})
from run_once import build_once

LOG = pathlib.Path({log!r})

@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    def build(folder):
        with open(LOG / "builds", "a") as f:
            f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
        time.sleep(1.0)
    return build_once(tmp_path_factory, "shared", build)

@pytest.mark.parametrize("i", range(4))
def test_uses(shared, i):
    (LOG / f"user-{{i}}").write_text(os.environ["PYTEST_XDIST_WORKER"] + " " + str(shared))
    time.sleep(0.3)
"""


@pytest.mark.multiprocess
def test_build_once_under_xdist_builds_once_per_run(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    (tmp_path / "test_shared.py").write_text(XDIST_RUN.format(tests=str(pathlib.Path(__file__).parent), log=str(log)))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                           "--basetemp", str(tmp_path / "base"), "test_shared.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=conftest.timeout_s(60))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    users = [(log / f"user-{i}").read_text().split() for i in range(4)]
    assert len((log / "builds").read_text().split()) == 1  # one build for the run ...
    assert len({worker for worker, _ in users}) == 2  # ... used by both workers
    assert {folder for _, folder in users} == {str(tmp_path / "base" / "once-shared")}
