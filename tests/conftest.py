"""Shared test setup: fp32-exact matmuls, absl flags parsed (grain workers), fixture paths, one
persistent XLA compilation cache per test run, subprocess time limits, the real-sequence rule."""
import os
import pathlib
import shutil
import tempfile
import time

# One persistent compilation cache per test run, shared by the xdist workers and by every
# subprocess the tests start (they inherit os.environ). The first pytest process of a run (the
# xdist controller, or pytest itself without -n) makes the folder and removes it at the end; the
# workers it starts find GRM_TEST_JAX_CACHE already set. jax reads these JAX_* variables when it
# is imported, so they are set before the import below.
RUN_CACHE_VAR = "GRM_TEST_JAX_CACHE"
_OWN_RUN_CACHE = RUN_CACHE_VAR not in os.environ
if _OWN_RUN_CACHE:
    os.environ[RUN_CACHE_VAR] = tempfile.mkdtemp(prefix="grm-jax-test-xla-cache-")
COMPILE_CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": os.environ[RUN_CACHE_VAR],
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # cache every executable, not only slow ones
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",  # and whatever its size
}
os.environ.update(COMPILE_CACHE_ENV)
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The machine's own dataset folders (~/.config/grm_jax/datasets.json, GRM_DATA_ROOT) must not leak
# into the tests (and their subprocesses): tests that need them set their own.
os.environ["GRM_DATASETS_FILE"] = os.devnull
os.environ.pop("GRM_DATA_ROOT", None)

import jax  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
flags.FLAGS.mark_as_parsed()

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
# Real camera sequences: research use only, read in place, never copied into the repo.
# GRM_REAL_SEQUENCES points the real-sequence tests at another folder of sequences
# (<seq>/ frames + groundtruth.txt); the default is the shared folder beside the checkout.
REAL_SEQUENCES = pathlib.Path(os.environ.get(
    "GRM_REAL_SEQUENCES", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "real_sequences"))

# Time limits of the subprocesses the tests start: the nominal seconds of each call site (what the
# command needs on an idle 2-core CPU, with room) times GRM_TEST_TIMEOUT_SCALE (default 4), so a
# heavily loaded machine (load 15 on 2 cores) does not fail them, while a hang still ends the test.
TIMEOUT_SCALE = float(os.environ.get("GRM_TEST_TIMEOUT_SCALE", "4"))


def timeout_s(nominal: float) -> float:
    """The time limit in seconds of a subprocess call whose nominal limit is ``nominal``."""
    return nominal * TIMEOUT_SCALE


MARKERS = {
    "slow": "takes more than ~20 s on a 2-core CPU; the development tier is -m 'not slow'",
    "venv": "builds or uses a separate virtual environment (wheel install, VOT toolkit, ONNX)",
    "multiprocess": "starts several JAX processes (multi-host, subprocess CLIs)",
    "real_data": "reads the real camera sequences (GRM_REAL_SEQUENCES)",
}


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_unconfigure(config):
    if _OWN_RUN_CACHE:
        shutil.rmtree(os.environ[RUN_CACHE_VAR], ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests that take the ``real_sequences`` fixture are marked ``real_data`` (before ``-m`` selects)."""
    for item in items:
        if "real_sequences" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)


def on_ci(environ=os.environ) -> bool:
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_real_sequences(path: pathlib.Path, environ=os.environ) -> pathlib.Path:
    """``path`` if it is a folder; else the test fails under CI=true (a CI run must not pass by
    skipping) and is skipped elsewhere."""
    if path.is_dir():
        return path
    message = f"real sequences not found at {path} (set GRM_REAL_SEQUENCES to their folder)"
    if on_ci(environ):
        pytest.fail(message + "; CI=true: tests that need them fail instead of skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_sequences():
    """The folder of real camera sequences (see :func:`require_real_sequences`)."""
    return require_real_sequences(REAL_SEQUENCES)


@pytest.fixture(scope="session")
def real_tracks(real_sequences, tmp_path_factory):
    """The fixture model (tests/fixtures/grm_tiny) tracking all real sequences together: batched
    (batch = number of sequences), threshold 0, masked attention (the CPU default). Returns
    ({name: SequenceResult}, seconds the tracking took). Tracked once per test run (tests/run_once.py)
    and shared by the tests that check these boxes (test_real_sequences, test_attention_fused)."""
    import pickle

    from convert_weights import convert_grm_checkpoint
    from grm_jax.datasets import load_benchmark
    from grm_jax.model import GRM
    from helpers import track_sequences
    from run_once import build_once

    def build(folder):
        seqs = load_benchmark("folder", real_sequences)
        config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
        start = time.perf_counter()
        runs = track_sequences(GRM(config), variables, seqs, None, 0.0, batch_size=len(seqs), attention="masked")
        (folder / "tracks.pkl").write_bytes(pickle.dumps((runs, time.perf_counter() - start)))

    return pickle.loads((build_once(tmp_path_factory, "real_tracks", build) / "tracks.pkl").read_bytes())


@pytest.fixture
def fresh_compile_cache():
    """Turns the run's persistent compilation cache off for one test, in this process: every jit
    compiles from scratch (in-memory jit caches aside). Subprocesses: use :func:`no_compile_cache_env`."""
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_enable_compilation_cache", True)
    compilation_cache.reset_cache()


def no_compile_cache_env(environ=None) -> dict:
    """A copy of ``environ`` (default os.environ) whose JAX processes use no persistent cache."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in COMPILE_CACHE_ENV}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES
