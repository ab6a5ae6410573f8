"""Official GRM checkpoint (`{'net': state_dict}`) -> (ModelConfig, Flax variables)."""
from __future__ import annotations

import math
import re

import jax
import numpy as np
from flax import traverse_util

from convert_weights.mapping import IGNORED_SUFFIXES, grm_entries, to_flax
from convert_weights.torch_state import load_state_dict
from grm_jax.errors import CheckpointError
from grm_jax.model.config import DEFAULT_HEADS, ModelConfig
from grm_jax.model.grm import GRM, abstract_variables

# Present in official checkpoints but unused by the tracking forward pass.
UNUSED_KEYS = ("backbone.cls_token", "backbone.pos_embed")


def _require(state: dict, key: str, source: str) -> np.ndarray:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key!r}; not a GRM/OSTrack state dict")
    return state[key]


def require_finite(array: np.ndarray, key: str, source: str) -> np.ndarray:
    """Returns ``array``; raises CheckpointError naming ``key`` when it is not a floating-point
    tensor or holds NaN or Inf."""
    if not np.issubdtype(array.dtype, np.floating):
        raise CheckpointError(f"{source}: tensor {key!r} has dtype {array.dtype}; a weight must be floating point",
                              hint="the file's storage types do not match a trained model")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise CheckpointError(f"{source}: tensor {key!r} holds {bad} NaN/Inf value(s) of {np.size(array)}",
                              hint="the checkpoint is corrupt or its training diverged; use another file")
    return array


def _grid_side(num_tokens: int, key: str, source: str) -> int:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise CheckpointError(f"{source}: {key} has {num_tokens} tokens, not a square grid")
    return side


def infer_config(state: dict[str, np.ndarray], num_heads: int | None = None,
                 source: str = "state dict", **overrides) -> ModelConfig:
    """Reads the architecture from tensor shapes (dims, depth, sizes, head channels)."""
    embed_w = _require(state, "backbone.patch_embed.proj.weight", source)
    if embed_w.ndim != 4 or embed_w.shape[1] != 3 or embed_w.shape[2] != embed_w.shape[3]:
        raise CheckpointError(f"{source}: backbone.patch_embed.proj.weight has shape {embed_w.shape}, "
                              "expected (D, 3, p, p)")
    dim, patch = int(embed_w.shape[0]), int(embed_w.shape[2])
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"backbone\.blocks\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError(f"{source}: no backbone.blocks.* keys")
    depth = max(blocks) + 1
    if len(blocks) != depth:
        missing_blocks = sorted(set(range(depth)) - blocks)
        raise CheckpointError(f"{source}: backbone.blocks.* indices are not 0..{depth - 1}: "
                              f"{len(missing_blocks)} missing, the first being {missing_blocks[0]}")
    sizes = {}
    for name in ("z", "x"):
        key = f"backbone.pos_embed_{name}"
        table = _require(state, key, source)
        if table.ndim != 3 or table.shape[0] != 1 or table.shape[2] != dim:
            raise CheckpointError(f"{source}: {key} has shape {table.shape}, expected (1, tokens, {dim})")
        sizes[name] = _grid_side(table.shape[1], key, source) * patch
    fc1 = _require(state, "backbone.blocks.0.mlp.fc1.weight", source)
    divide_layers = tuple(sorted(i for i in blocks if f"backbone.blocks.{i}.attn.divide_predict.0.weight" in state))
    hidden = (384, 192)
    if divide_layers:
        first = f"backbone.blocks.{divide_layers[0]}.attn.divide_predict"
        hidden = (int(state[f"{first}.0.weight"].shape[0]), int(state[f"{first}.2.weight"].shape[0]))
    head_c = int(_require(state, "box_head.conv1_ctr.0.weight", source).shape[0])
    if num_heads is not None and not (isinstance(num_heads, (int, np.integer)) and num_heads >= 1):
        raise CheckpointError(f"{source}: num_heads must be a positive integer, got {num_heads!r}")
    if num_heads is None:
        if dim not in DEFAULT_HEADS:
            raise CheckpointError(f"{source}: no default head count for dim {dim}; pass --num-heads")
        num_heads = DEFAULT_HEADS[dim]
    if dim % num_heads:
        raise CheckpointError(f"{source}: num_heads={num_heads} does not divide embed dim {dim}")
    kwargs = dict(embed_dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=fc1.shape[0] / dim,
                  patch_size=patch, template_size=sizes["z"], search_size=sizes["x"],
                  head_channels=head_c, divide_layers=divide_layers, predictor_hidden=hidden)
    kwargs.update(overrides)
    try:
        return ModelConfig(**kwargs)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from err


def _key_list(keys: list[str], limit: int = 20) -> str:
    return str(keys) if len(keys) <= limit else f"{keys[:limit]} and {len(keys) - limit} more"


def _used_keys(keys, config: ModelConfig, source: str) -> set[str]:
    """The keys of ``keys`` the model uses; CheckpointError listing missing / unexpected ones."""
    expected = {e.torch_key for e in grm_entries(config)} | {"backbone.pos_embed_z", "backbone.pos_embed_x"}
    present = {k for k in keys if not k.endswith(IGNORED_SUFFIXES) and k not in UNUSED_KEYS}
    missing, unexpected = sorted(expected - present), sorted(present - expected)
    if missing or unexpected:
        raise CheckpointError(f"{source}: state dict does not match the GRM architecture; "
                              f"missing keys {_key_list(missing)}; unexpected keys {_key_list(unexpected)}")
    return expected


def model_elements(target) -> int:
    """Total element count of a variables tree (of arrays or ShapeDtypeStructs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(target))


def shape_stand_ins(shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """{key: shape} -> {key: zero-stride array of that shape} (no memory), for shape-only code."""
    return {k: np.broadcast_to(np.uint8(0), s) for k, s in shapes.items()}


def grm_plan(source: str, found: dict, num_heads: int | None = None, **overrides):
    """A ``load_state_dict`` plan: from the tensors' shapes alone (nothing read yet) infer the
    config and check the key set, then read only the used keys, at most as many elements as the
    model's variables hold. Leaves ``found['config']`` and ``found['target']`` (abstract variables)."""
    def plan(shapes: dict[str, tuple]):
        config = infer_config(shape_stand_ins(shapes), num_heads=num_heads, source=source, **overrides)
        used = _used_keys(shapes, config, source)  # before the model is sized: depth comes from the keys
        found.update(config=config, target=abstract_variables(GRM(config)))
        return used, model_elements(found["target"])
    return plan


def state_dict_to_variables(state: dict[str, np.ndarray], config: ModelConfig,
                            source: str = "state dict", target=None) -> dict:
    """Official GRM state dict -> {'params', 'batch_stats'} numpy trees for `config`.

    Raises CheckpointError listing missing / unexpected keys and any shape mismatch.
    target: ``abstract_variables(GRM(config))`` when already computed.
    """
    entries = grm_entries(config)
    expected = _used_keys(state, config, source)
    for key in sorted(expected):
        require_finite(state[key], key, source)
    target = traverse_util.flatten_dict(abstract_variables(GRM(config)) if target is None else target)
    flat: dict = {}
    for e in entries:
        value = to_flax(state[e.torch_key], e.layout)
        want = target[(e.collection, *e.path)].shape
        if value.shape != tuple(want):
            raise CheckpointError(f"{source}: {e.torch_key} has shape {state[e.torch_key].shape}, "
                                  f"which gives {value.shape} but the model needs {tuple(want)}")
        flat[(e.collection, *e.path)] = value.astype(np.float32)
    for name in ("z", "x"):
        flat[("params", "backbone", f"pos_embed_{name}")] = state[f"backbone.pos_embed_{name}"].astype(np.float32)
    return traverse_util.unflatten_dict(flat)



def convert_grm_checkpoint(path: str, num_heads: int | None = None, **overrides) -> tuple[ModelConfig, dict]:
    """Reads an official GRM .pth.tar (or .npz state dict) -> (config, variables)."""
    found: dict = {}
    state = load_state_dict(path, container_key="net", plan=grm_plan(str(path), found, num_heads, **overrides))
    variables = state_dict_to_variables(state, found["config"], source=str(path), target=found["target"])
    config = found["config"]
    return config, jax.tree_util.tree_map(np.asarray, variables)
