"""Run-config helpers: load a python config file, apply KEY=VALUE overrides, and turn the
`model` section into a ModelConfig. Unknown keys are errors that name the key."""
from __future__ import annotations

import ast
import importlib.util
import pathlib
import sys

import ml_collections

from grm_jax.model.config import ModelConfig


def parse_layer_ranges(spec, depth: int) -> tuple[int, ...]:
    """'1-11' / '4-11,0' / '' / [1, 2] / 'all' -> sorted 0-based block indices."""
    if spec is None:
        return tuple(range(1, depth))
    if isinstance(spec, (list, tuple)):
        return tuple(sorted(int(i) for i in spec))
    spec = str(spec).strip()
    if spec in ("", "none"):
        return ()
    if spec == "all":
        return tuple(range(depth))
    layers = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        layers.update(range(int(lo), int(hi or lo) + 1))
    return tuple(sorted(layers))


def model_config_from(config: ml_collections.ConfigDict) -> ModelConfig:
    m = config.model.to_dict()
    m["divide_layers"] = parse_layer_ranges(m.get("divide_layers"), m["depth"])
    return ModelConfig.from_dict(m)


def load_config(path: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    """Imports `path` (a file with get_config()) and applies 'a.b=value' overrides."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    root = str(path.resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(f"_grm_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        set_by_path(config, key.removeprefix("config."), raw)
    return config


def set_by_path(config: ml_collections.ConfigDict, key: str, raw: str) -> None:
    node = config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part not in node:
            raise KeyError(f"unknown config key {'.'.join(parts[:i + 1])!r}")
        if i < len(parts) - 1:
            node = node[part]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    node[parts[-1]] = value
