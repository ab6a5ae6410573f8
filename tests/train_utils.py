"""Helpers for the training tests: ``launch.py`` in subprocesses (micro GRM on the sample data), a
learnable synthetic batch, and readers of a training workdir (through grm_jax.checkpoint)."""
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

from conftest import timeout_s
from models import micro_overrides

REPO = pathlib.Path(__file__).resolve().parents[1]

# The tests' micro model (tests/models.py) as launch.py values, on top of configs/grm_tiny_cpu.py.
MICRO_OVERRIDES = micro_overrides()


def data_overrides(sample_dir):
    """Train on generated sequences at ``sample_dir`` (made if missing) read as a GOT-10k-layout
    dataset: a configured dataset, so the run is exactly as configured (not the announced sample run
    that training does with no dataset configured)."""
    from grm_jax.datasets.sample_generator import ensure_sample_dataset

    root = ensure_sample_dataset(sample_dir)
    return ["--config.data.datasets=got10k_train_all", "--config.data.ratios=[1.0]",
            f"--config.data.roots.got10k={root}"]


def train_command(workdir, sample_dir, *extra):
    return [sys.executable, str(REPO / "launch.py"), "--config", str(REPO / "configs" / "grm_tiny_cpu.py"),
            "--workdir", str(workdir), *data_overrides(sample_dir), *MICRO_OVERRIDES, *extra]


def subprocess_env(cache_dir=None, devices: int = 1, **extra):
    """Environment of a training subprocess: CPU with ``devices`` devices and a persistent
    compilation cache: the test run's shared one (conftest, inherited from os.environ) unless
    ``cache_dir`` names another."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
    env.update({
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_DEFAULT_MATMUL_PRECISION": "highest",
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_ok(cmd, env, timeout=300):
    """Runs ``cmd`` (``timeout``: nominal seconds, see conftest.timeout_s); its output, or fails with it."""
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s(timeout))
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc.stdout + proc.stderr


def final_params(workdir):
    """{path: array} of the latest checkpoint's params in ``workdir`` (what load_model reads),
    restored onto one local device whatever topology saved it."""
    from grm_jax.checkpoint import load_model

    variables = load_model(workdir)[1]
    return {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(variables["params"])[0]}


def latest_step(workdir):
    from grm_jax.checkpoint import checkpoint_steps

    steps = checkpoint_steps(workdir)
    return steps[-1] if steps else None


def synthetic_batch(config, batch_size: int, seed: int = 0, start: int = 0) -> dict:
    """A learnable batch for ModelConfig ``config``: a textured square on a noise background; the
    template shows it centred (factor 2), the search shows it at a random place and size. Row ``k``
    depends only on (seed, start + k). Returns the ``grm_jax.train.step.STEP_KEYS`` arrays
    (normalized NHWC images, normalized x1y1wh search box, heatmap)."""
    from data_pipelines.processing import generate_heatmap

    t, s = config.template_size, config.search_size
    rows = []
    for k in range(batch_size):
        rng = np.random.default_rng([int(seed), start + k])
        color = rng.uniform(-1.5, 1.5, size=3).astype(np.float32)
        tpl = rng.normal(0, 0.5, (t, t, 3)).astype(np.float32)
        a = t // 4
        tpl[a:t - a, a:t - a] = color
        srch = rng.normal(0, 0.5, (s, s, 3)).astype(np.float32)
        size = rng.uniform(0.2, 0.4, size=2)
        x1y1 = rng.uniform(0.02, 1.0 - size - 0.02)
        px = np.round(np.concatenate([x1y1, x1y1 + size]) * s).astype(int)
        srch[px[1]:px[3], px[0]:px[2]] = color
        box = np.array([px[0], px[1], px[2] - px[0], px[3] - px[1]], np.float32) / s
        rows.append((tpl, srch, box))
    boxes = np.stack([r[2] for r in rows])
    return {"template": np.stack([r[0] for r in rows]), "search": np.stack([r[1] for r in rows]),
            "search_box": boxes, "heatmap": generate_heatmap(boxes, s, config.patch_size)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_processes(cmd, log_dir, cache_dir=None, count: int = 2, devices: int = 2, timeout: int = 600) -> list[str]:
    """Runs ``cmd`` as ``count`` jax.distributed processes (``devices`` CPU devices each) joined
    through a local coordinator; returns their logs and fails with their tails unless all exit 0."""
    port, procs, logs = free_port(), [], []
    for pid in range(count):
        env = subprocess_env(cache_dir, devices=devices, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                             JAX_NUM_PROCESSES=count, JAX_PROCESS_ID=pid)
        logs.append(pathlib.Path(log_dir) / f"process{pid}.log")
        with logs[-1].open("w") as log:
            procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=timeout_s(timeout)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    text = [log.read_text() for log in logs]
    assert codes == [0] * count, "\n".join(t[-3000:] for t in text)
    return text
