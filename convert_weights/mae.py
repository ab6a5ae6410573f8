"""MAE encoder (`{'model': state_dict}`) -> initial training variables of a GRM model.

Backbone tensors are copied; `pos_embed` (1, 1+g*g, D) loses its cls entry and is resized
to the template and search grids with PyTorch's bicubic kernel (a=-0.75,
align_corners=False, no antialias). Division predictors and the head keep the model's
own initialization (trunc-normal linears, xavier-uniform head convs), from `seed`.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from flax import traverse_util

from convert_weights.grm import require_finite
from convert_weights.mapping import backbone_entries, flax_shape, to_flax
from convert_weights.torch_state import load_state_dict
from grm_jax.errors import CheckpointError
from grm_jax.model.config import ModelConfig
from grm_jax.model.grm import GRM, abstract_variables, init_variables

# Keys of MAE files that GRM does not use.
IGNORED_MAE_KEYS = ("cls_token", "mask_token")


def resize_pos_embed(pos_embed: np.ndarray, grid: int, num_prefix_tokens: int = 1) -> np.ndarray:
    """(1, P+g0*g0, D) table -> (1, grid*grid, D), PyTorch bicubic (align_corners=False)."""
    table = np.asarray(pos_embed, np.float32)[0, num_prefix_tokens:]
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise CheckpointError(f"pos_embed has {table.shape[0]} patch positions, not a square grid")
    image = table.reshape(side, side, -1)
    out = jax.image.resize(image, (grid, grid, image.shape[-1]), method="bicubic-pytorch", antialias=False)
    return np.asarray(out, np.float32).reshape(1, grid * grid, -1)


def check_encoder(shapes: dict[str, tuple], config: ModelConfig, source: str, target: dict) -> set[str]:
    """Checks the key set and every shape of an MAE encoder ({key: torch shape}) against
    ``config`` (``target``: flattened abstract variables); returns the keys GRM uses."""
    entries = list(backbone_entries(config, prefix=""))
    expected = {e.torch_key for e in entries} | {"pos_embed"}
    present = {k for k in shapes if k not in IGNORED_MAE_KEYS and not k.startswith("decoder")}
    missing, unexpected = sorted(expected - present), sorted(present - expected)
    if missing or unexpected:
        raise CheckpointError(f"{source}: does not match a depth-{config.depth} dim-{config.embed_dim} ViT "
                              f"encoder; missing keys {missing[:20]}; unexpected keys {unexpected[:20]}")
    for e in entries:
        got, want = flax_shape(shapes[e.torch_key], e.layout), tuple(target[(e.collection, *e.path)].shape)
        if got != want:
            raise CheckpointError(f"{source}: {e.torch_key} has shape {tuple(shapes[e.torch_key])}, which gives "
                                  f"{got} but the model config needs {want}")
    pos = tuple(shapes["pos_embed"])
    if len(pos) != 3 or pos[0] != 1 or pos[-1] != config.embed_dim or pos[1] > 1 + 4 * config.search_grid ** 2:
        raise CheckpointError(f"{source}: pos_embed has shape {pos}, expected (1, 1+g*g, {config.embed_dim}) "
                              f"with g at most {2 * config.search_grid}")
    return expected


def mae_to_variables(state: dict[str, np.ndarray], config: ModelConfig, seed: int = 0,
                     source: str = "MAE checkpoint") -> dict:
    """MAE encoder state dict + model config -> {'params', 'batch_stats'} (numpy)."""
    target = traverse_util.flatten_dict(abstract_variables(GRM(config)))
    expected = check_encoder({k: v.shape for k, v in state.items()}, config, source, target)
    for key in sorted(expected):  # before the (slow) model initialization
        require_finite(state[key], key, source)
    flat = traverse_util.flatten_dict(init_variables(GRM(config), jax.random.PRNGKey(seed)))
    flat = {k: np.array(v) for k, v in flat.items()}  # writable numpy copies
    for e in backbone_entries(config, prefix=""):
        flat[(e.collection, *e.path)] = to_flax(state[e.torch_key], e.layout).astype(np.float32)
    pos = state["pos_embed"]
    flat[("params", "backbone", "pos_embed_z")] = resize_pos_embed(pos, config.template_grid)
    flat[("params", "backbone", "pos_embed_x")] = resize_pos_embed(pos, config.search_grid)
    return traverse_util.unflatten_dict(flat)


def convert_mae_checkpoint(path: str, config: ModelConfig, seed: int = 0) -> dict:
    """Reads an MAE .pth (or .npz) and returns initial variables for `config`.

    Before any tensor is read, the key set and shapes are checked against ``config`` and the
    tensors to read are limited to the encoder's element count (plus its position table)."""
    source = str(path)

    def plan(shapes):
        target = traverse_util.flatten_dict(abstract_variables(GRM(config)))
        keys = check_encoder(shapes, config, source, target)
        return keys, sum(math.prod(shapes[k]) for k in keys)

    state = load_state_dict(path, container_key="model", plan=plan)
    return mae_to_variables(state, config, seed=seed, source=source)
