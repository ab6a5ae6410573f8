"""Helpers for the training tests that run ``launch.py`` in subprocesses (micro GRM on the sample data)."""
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]

# Micro model (dim 64, depth 3, template 32 / search 64) on top of configs/grm_tiny_cpu.py.
MICRO_OVERRIDES = [
    "--config.model.embed_dim=64", "--config.model.depth=3", "--config.model.num_heads=2",
    "--config.model.divide_layers=1-2", "--config.model.head_channels=16", "--config.model.drop_path_rate=0.1",
    "--config.model.template_size=32", "--config.model.search_size=64",
    "--config.data.template.size=32", "--config.data.search.size=64",
]


def train_command(workdir, sample_dir, *extra):
    return [sys.executable, str(REPO / "launch.py"), "--config", str(REPO / "configs" / "grm_tiny_cpu.py"),
            "--workdir", str(workdir), f"--config.data.sample_dir={sample_dir}", *MICRO_OVERRIDES, *extra]


def subprocess_env(cache_dir, devices: int = 1, **extra):
    """Environment of a training subprocess: CPU with ``devices`` devices, shared compilation cache."""
    env = dict(os.environ)
    env.update({
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_COMPILATION_CACHE_DIR": str(cache_dir),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_DEFAULT_MATMUL_PRECISION": "highest",
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_ok(cmd, env, timeout=300):
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc.stdout + proc.stderr


def final_params(workdir):
    """{path: array} of the latest checkpoint's params in ``workdir`` (what load_model reads),
    restored onto one local device whatever topology saved it."""
    from grm_jax.checkpoint import load_variables, read_model_config

    variables = load_variables(workdir, read_model_config(workdir))
    return {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(variables["params"])[0]}


def latest_step(workdir):
    ck = pathlib.Path(workdir) / "checkpoints"
    steps = [int(p.name) for p in ck.iterdir() if p.name.isdigit()] if ck.is_dir() else []
    return max(steps) if steps else None
