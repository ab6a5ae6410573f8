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
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from grm_jax.run_config import TrainConfig

__all__ = ["GROUPS", "OptimizerSpec", "param_group", "param_labels", "make_optimizer",
           "clip_by_global_norm_torch", "optimizer_spec_from", "group_sizes"]

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


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """Numbers of the schedule; ``steps_per_epoch`` converts epochs to optimizer steps."""

    lr: float = 4e-4
    backbone_lr_mult: float = 0.1
    divide_lr: float = 4e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    lr_drop_epoch: int = 80
    steps_per_epoch: int = 1
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def base_lrs(self) -> dict[str, float]:
        return {"head": self.lr, "backbone": self.lr * self.backbone_lr_mult, "divide": self.divide_lr}


def optimizer_spec_from(train: TrainConfig, steps_per_epoch: int) -> OptimizerSpec:
    """OptimizerSpec of the ``train`` section of a run config."""
    return OptimizerSpec(lr=train.lr, backbone_lr_mult=train.backbone_lr_mult, divide_lr=train.divide_lr,
                         weight_decay=train.weight_decay, grad_clip=train.grad_clip,
                         lr_drop_epoch=train.lr_drop_epoch, steps_per_epoch=max(int(steps_per_epoch), 1))


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


def make_optimizer(spec: OptimizerSpec) -> tuple[optax.GradientTransformation, Callable[[jax.Array], dict]]:
    """Returns (tx, lr_fn). ``lr_fn(step)`` -> {'head': lr, 'backbone': lr, 'divide': lr} used at
    optimizer step ``step`` (0-based; the step that produces state.step + 1)."""
    # lr * 0.1 ** floor(step / drop_steps): torch StepLR counted in optimizer steps
    drop_steps = max(spec.lr_drop_epoch * spec.steps_per_epoch, 1)
    schedules = {g: optax.exponential_decay(lr, drop_steps, 0.1, staircase=True)
                 for g, lr in spec.base_lrs().items()}
    groups = {g: optax.adamw(schedules[g], b1=spec.b1, b2=spec.b2, eps=spec.eps,
                             weight_decay=spec.weight_decay) for g in GROUPS}
    tx = optax.chain(clip_by_global_norm_torch(spec.grad_clip), optax.multi_transform(groups, param_labels))

    def lr_fn(step) -> dict:
        return {g: schedules[g](step) for g in GROUPS}

    return tx, lr_fn


def group_sizes(params) -> Mapping[str, int]:
    """Number of scalars per group (for the startup summary)."""
    sizes = {g: 0 for g in GROUPS}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        sizes[param_group(path)] += int(leaf.size)
    return sizes
