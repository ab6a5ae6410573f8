"""GRM optimizer: global grad-norm clip, then AdamW with three parameter groups.

Groups (by parameter path, as the official ``get_optimizer_scheduler``):
  head      every parameter outside ``backbone`` (centre head, ...)  lr = train.lr (4e-4)
  backbone  ``backbone`` minus the division predictors               lr = train.lr * backbone_lr_mult (4e-5)
  divide    ``backbone/.../divide_predict``                          lr = train.divide_lr (4e-4)

Every group: AdamW (betas 0.9/0.999, eps 1e-8, decoupled weight decay ``weight_decay`` scaled by the
group LR, applied to all parameters as torch.optim.AdamW does), step decay x0.1 every
``lr_drop_epoch`` epochs (torch StepLR stepped once per epoch). Gradients are first clipped to
global norm ``grad_clip`` with torch's ``clip_grad_norm_`` formula (factor max_norm / (norm + 1e-6)
when that is < 1), over ALL gradients together, before the AdamW step.

``warmup_steps`` (not in the official recipe; default 0 = none) multiplies every group's LR by
min(1, (step + 1) / warmup_steps) over the first optimizer steps; the step decay is unchanged.
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from grm_jax.run_config import TrainConfig

__all__ = ["GROUPS", "base_lrs", "param_group", "param_labels", "make_optimizer",
           "clip_by_global_norm_torch", "group_sizes"]

GROUPS = ("head", "backbone", "divide")
DIVIDE_KEY = "divide_predict"
BACKBONE_KEY = "backbone"


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def param_group(path) -> str:
    """Group name of a parameter from its tree path (tuple of keys or of strings)."""
    names = [_key_name(k) for k in path]
    if BACKBONE_KEY not in names:
        return "head"
    return "divide" if any(DIVIDE_KEY in n for n in names) else "backbone"


def param_labels(params) -> dict:
    """Same tree as ``params`` with each leaf replaced by its group name."""
    return jax.tree_util.tree_map_with_path(lambda p, _: param_group(p), params)


# AdamW moments and epsilon of the official recipe (torch.optim.AdamW defaults).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def base_lrs(train: TrainConfig) -> dict[str, float]:
    """Initial learning rate of each parameter group (run config ``train`` section)."""
    return {"head": train.lr, "backbone": train.lr * train.backbone_lr_mult, "divide": train.divide_lr}


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
    """torch.nn.utils.clip_grad_norm_: g *= min(1, max_norm / (||g|| + 1e-6))."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
        return jax.tree_util.tree_map(lambda g: (g * coef).astype(g.dtype), updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(train: TrainConfig, steps_per_epoch: int = 1
                   ) -> tuple[optax.GradientTransformation, Callable[[jax.Array], dict]]:
    """The optimizer of the run config's ``train`` section (lr, backbone_lr_mult, divide_lr,
    weight_decay, grad_clip, lr_drop_epoch); ``steps_per_epoch`` converts epochs to optimizer
    steps. Returns (tx, lr_fn). ``lr_fn(step)`` -> {'head': lr, 'backbone': lr, 'divide': lr} used
    at optimizer step ``step`` (0-based; the step that produces state.step + 1)."""
    # lr * 0.1 ** floor(step / drop_steps): torch StepLR counted in optimizer steps
    drop_steps = max(train.lr_drop_epoch * max(int(steps_per_epoch), 1), 1)
    schedules = {g: _with_warmup(optax.exponential_decay(lr, drop_steps, 0.1, staircase=True), train.warmup_steps)
                 for g, lr in base_lrs(train).items()}
    groups = {g: optax.adamw(schedules[g], b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS,
                             weight_decay=train.weight_decay) for g in GROUPS}
    tx = optax.chain(clip_by_global_norm_torch(train.grad_clip), optax.multi_transform(groups, param_labels))

    def lr_fn(step) -> dict:
        return {g: schedules[g](step) for g in GROUPS}

    return tx, lr_fn


def _with_warmup(schedule: optax.Schedule, warmup_steps: int) -> optax.Schedule:
    """``schedule`` times the linear warmup factor min(1, (step + 1) / warmup_steps); 0 = unchanged."""
    if warmup_steps <= 0:
        return schedule
    return lambda step: schedule(step) * jnp.minimum(1.0, (step + 1) / warmup_steps)


def group_sizes(params) -> Mapping[str, int]:
    """Number of scalars per group (for the startup summary)."""
    sizes = {g: 0 for g in GROUPS}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        sizes[param_group(path)] += int(leaf.size)
    return sizes
