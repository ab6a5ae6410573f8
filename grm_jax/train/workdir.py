"""The files a training run writes into its work directory at the start; the workdir lock
(``<workdir>/train.lock``) is :class:`grm_jax.workdir_lock.WorkdirLock`, shared with evaluation.
In a multi-host run only process 0 takes the lock (see :func:`grm_jax.train.loop.run_train`).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

from grm_jax import checkpoint as ckpt_lib
from grm_jax.errors import WorkdirError
from grm_jax.io_utils import atomic_write_text
from grm_jax.model.config import ModelConfig
from grm_jax.run_config import RunConfig
from grm_jax.workdir_lock import WorkdirLock

__all__ = ["WorkdirLock", "write_run_files"]


def write_run_files(workdir: pathlib.Path, run: RunConfig, model_config: ModelConfig) -> None:
    """Writes ``model_config.json``, ``track_config.json`` (the run's track section) and ``config.json``; refuses a workdir whose checkpoints were
    trained with another model (WorkdirError naming the differing fields)."""
    existing = workdir / ckpt_lib.CONFIG_FILE
    if existing.is_file() and ckpt_lib.checkpoint_steps(workdir):
        old = ckpt_lib.read_model_config(workdir)
        if old != model_config:
            diff = [f"{f.name}: {getattr(old, f.name)!r} -> {getattr(model_config, f.name)!r}"
                    for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(model_config, f.name)]
            raise WorkdirError(f"{workdir} holds checkpoints of another model ({existing}: {'; '.join(diff)})",
                               hint="train into a new --workdir, or restore the model settings of that run")
    ckpt_lib.write_model_config(workdir, model_config, run.track)
    text = json.dumps({"name": run.name, **run.to_dict()}, indent=2, sort_keys=True) + "\n"
    atomic_write_text(workdir / ckpt_lib.RUN_CONFIG_FILE, text)
