"""The one table between official PyTorch key names and our Flax variable paths.

`entries(config, prefix)` lists (torch_key, collection, flax_path, layout) for every
tensor of a GRM network; layouts say how a torch tensor becomes a Flax array:
  'linear' (out,in) -> (in,out); 'conv' (O,I,kh,kw) -> (kh,kw,I,O); 'same' unchanged.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from grm_jax.model.config import ModelConfig


class Entry(NamedTuple):
    torch_key: str
    collection: str  # 'params' or 'batch_stats'
    path: tuple[str, ...]
    layout: str


BRANCHES = ("ctr", "size", "offset")
IGNORED_SUFFIXES = ("num_batches_tracked",)


def _linear(tkey, path):
    yield Entry(f"{tkey}.weight", "params", path + ("kernel",), "linear")
    yield Entry(f"{tkey}.bias", "params", path + ("bias",), "same")


def _norm(tkey, path):
    yield Entry(f"{tkey}.weight", "params", path + ("scale",), "same")
    yield Entry(f"{tkey}.bias", "params", path + ("bias",), "same")


def backbone_entries(config: ModelConfig, prefix: str = "backbone.") -> Iterator[Entry]:
    """Backbone tensors; MAE encoders use prefix ''."""
    bb = ("backbone",)
    yield Entry(f"{prefix}patch_embed.proj.weight", "params", bb + ("patch_embed", "kernel"), "conv")
    yield Entry(f"{prefix}patch_embed.proj.bias", "params", bb + ("patch_embed", "bias"), "same")
    for i in range(config.depth):
        t, p = f"{prefix}blocks.{i}.", bb + (f"blocks_{i}",)
        yield from _norm(t + "norm1", p + ("norm1",))
        yield from _linear(t + "attn.qkv", p + ("attn", "qkv"))
        yield from _linear(t + "attn.proj", p + ("attn", "proj"))
        yield from _norm(t + "norm2", p + ("norm2",))
        yield from _linear(t + "mlp.fc1", p + ("fc1",))
        yield from _linear(t + "mlp.fc2", p + ("fc2",))
    yield from _norm(f"{prefix}norm", bb + ("norm",))


def predictor_entries(config: ModelConfig, prefix: str = "backbone.") -> Iterator[Entry]:
    if not config.predicts_division:
        return
    for i in config.divide_layers:
        for torch_idx, name in ((0, "fc0"), (2, "fc1"), (4, "fc2")):
            yield from _linear(f"{prefix}blocks.{i}.attn.divide_predict.{torch_idx}",
                               ("backbone", f"blocks_{i}", "attn", "divide_predict", name))


def head_entries(config: ModelConfig) -> Iterator[Entry]:
    for br in BRANCHES:
        path = ("box_head", br)
        for k in range(1, 5):
            t = f"box_head.conv{k}_{br}"
            yield Entry(f"{t}.0.weight", "params", path + (f"conv{k}", "kernel"), "conv")
            yield Entry(f"{t}.0.bias", "params", path + (f"conv{k}", "bias"), "same")
            yield from _norm(f"{t}.1", path + (f"bn{k}",))
            yield Entry(f"{t}.1.running_mean", "batch_stats", path + (f"bn{k}", "mean"), "same")
            yield Entry(f"{t}.1.running_var", "batch_stats", path + (f"bn{k}", "var"), "same")
        yield Entry(f"box_head.conv5_{br}.weight", "params", path + ("conv5", "kernel"), "conv")
        yield Entry(f"box_head.conv5_{br}.bias", "params", path + ("conv5", "bias"), "same")


def grm_entries(config: ModelConfig) -> list[Entry]:
    """Every tensor of an official GRM checkpoint except the two position tables."""
    return [*backbone_entries(config), *predictor_entries(config), *head_entries(config)]


def to_flax(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "linear":
        return np.ascontiguousarray(array.T)
    if layout == "conv":
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    return np.asarray(array)


def flax_shape(shape: tuple, layout: str) -> tuple:
    """The shape ``to_flax`` gives a torch tensor of ``shape`` (without touching any data)."""
    shape = tuple(shape)
    if layout == "linear":
        return shape[::-1]
    if layout == "conv" and len(shape) == 4:
        return tuple(shape[i] for i in (2, 3, 1, 0))
    return shape
