"""Model directories on disk: the only module that knows their layout.

A model directory (written by the converters and at the end of training):
    <dir>/model_config.json     ModelConfig as JSON
    <dir>/variables/            orbax checkpoint of {'params', 'batch_stats'}
A training work directory holds `model_config.json` and `checkpoints/<step>/variables`
(orbax CheckpointManager); `load_model(workdir)` takes the latest step.
"""
from __future__ import annotations

import json
import os
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from grm_jax.model.config import ModelConfig
from grm_jax.model.grm import GRM, abstract_variables

CONFIG_FILE = "model_config.json"
VARIABLES_DIR = "variables"
CHECKPOINTS_DIR = "checkpoints"


def write_model_config(directory: str | os.PathLike, config: ModelConfig) -> None:
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(config.to_json())
    os.replace(tmp, directory / CONFIG_FILE)


def read_model_config(directory: str | os.PathLike) -> ModelConfig:
    path = pathlib.Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; not a grm-jax model or training directory")
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid model config ({err})") from err


def save_model(directory: str | os.PathLike, config: ModelConfig, variables: dict) -> pathlib.Path:
    """Writes a model directory; overwrites an existing one."""
    directory = pathlib.Path(directory).absolute()
    write_model_config(directory, config)
    variables = {k: jax.tree_util.tree_map(np.asarray, dict(variables[k])) for k in ("params", "batch_stats")}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / VARIABLES_DIR, variables, force=True)
    return directory


def _latest_step_dir(workdir: pathlib.Path) -> pathlib.Path:
    steps = sorted((int(p.name), p) for p in (workdir / CHECKPOINTS_DIR).iterdir() if p.name.isdigit())
    if not steps:
        raise FileNotFoundError(f"{workdir / CHECKPOINTS_DIR}: no checkpoint steps")
    return steps[-1][1]


def resolve_variables_dir(path: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Returns (directory holding model_config.json, orbax variables directory)."""
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint directory")
    if (path / VARIABLES_DIR).is_dir():
        return path, path / VARIABLES_DIR
    if (path / CHECKPOINTS_DIR).is_dir():
        return path, _latest_step_dir(path) / VARIABLES_DIR
    raise FileNotFoundError(f"{path}: neither a model directory (variables/) nor a training "
                            f"workdir (checkpoints/)")


def load_variables(path: str | os.PathLike, config: ModelConfig) -> dict:
    """Restores {'params', 'batch_stats'} shaped for `config` from a model dir or workdir."""
    _, variables_dir = resolve_variables_dir(path)
    # Restore onto one local device, whatever topology wrote it (e.g. a 2-host training run).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = abstract_variables(GRM(config))
    target = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                                    {k: target[k] for k in ("params", "batch_stats")})
    with ocp.StandardCheckpointer() as ckptr:
        try:
            restored = ckptr.restore(variables_dir, target)
        except (ValueError, KeyError) as err:
            raise ValueError(f"{variables_dir}: weights do not match {CONFIG_FILE} ({err})") from err
    _check_like(restored, target, variables_dir)
    return restored


def _check_like(restored, target, where) -> None:
    """Orbax may hand back saved shapes that differ from the target: reject them, naming the leaf."""
    got = jax.tree_util.tree_flatten_with_path(restored)[0]
    want = jax.tree_util.tree_flatten_with_path(target)[0]
    if [p for p, _ in got] != [p for p, _ in want]:
        raise ValueError(f"{where}: weights do not match {CONFIG_FILE} (different variable names)")
    for (path, a), (_, b) in zip(got, want):
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"{where}: weights do not match {CONFIG_FILE}: "
                             f"{jax.tree_util.keystr(path)} is {tuple(a.shape)}, config needs {tuple(b.shape)}")


def load_model(path: str | os.PathLike, dtype=None) -> tuple[GRM, dict]:
    """(model, variables) from a converted model directory or a training workdir.

    `model.apply(variables, template, search, threshold=0.0)`; see `grm_jax.model.GRM`.
    dtype: compute dtype (e.g. jnp.bfloat16); parameters stay float32.
    """
    config_dir, _ = resolve_variables_dir(path)
    config = read_model_config(config_dir)
    model = GRM(config) if dtype is None else GRM(config, dtype=dtype)
    return model, load_variables(path, config)
