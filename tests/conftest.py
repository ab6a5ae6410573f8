"""Shared test setup: fp32-exact matmuls, absl flags parsed (grain workers), fixture paths."""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The machine's own dataset folders (~/.config/grm_jax/datasets.json, GRM_DATA_ROOT) must not leak
# into the tests (and their subprocesses): tests that need them set their own.
os.environ["GRM_DATASETS_FILE"] = os.devnull
os.environ.pop("GRM_DATA_ROOT", None)

import jax  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
flags.FLAGS.mark_as_parsed()

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
# Real camera sequences: research use only, read in place, never copied into the repo.
# GRM_REAL_SEQUENCES points the real-sequence tests at another folder of sequences
# (<seq>/ frames + groundtruth.txt); the default is the shared folder beside the checkout.
REAL_SEQUENCES = pathlib.Path(os.environ.get(
    "GRM_REAL_SEQUENCES", pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "real_sequences"))


MARKERS = {
    "slow": "takes more than ~20 s on a 2-core CPU; the development tier is -m 'not slow'",
    "venv": "builds or uses a separate virtual environment (wheel install, VOT toolkit, ONNX)",
    "multiprocess": "starts several JAX processes (multi-host, subprocess CLIs)",
    "real_data": "reads the real camera sequences (GRM_REAL_SEQUENCES)",
}


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES
