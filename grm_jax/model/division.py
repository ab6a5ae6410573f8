"""Adaptive token division: predictor MLP and the category decision (paper Sec. 3.2).

Shapes: search tokens x (B, Nx, D), template tokens z (B, Nz, D), log-probs (B, Nx, K)
over the K search categories of the relation form (GRM: K=2, column 0 = E_S, 1 = E_A).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

linear_init = nn.initializers.truncated_normal(0.02)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU in torch.nn.GELU's form, x/2 (1 + erf(x / sqrt 2)), in the dtype of ``x``.

    Same function as ``jax.nn.gelu(approximate=False)`` (which goes through erfc); XLA's erf is a
    single rational approximation, erfc has a branch per range, so this form is cheaper to compute
    and to differentiate (benchmarks/RESULTS.md, "Faster train step").
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.asarray(np.sqrt(0.5), x.dtype)))


class DivisionPredictor(nn.Module):
    """concat([x_i, t]) -> Linear(2D,384) -> GELU -> Linear(384,192) -> GELU -> Linear(K) -> log_softmax."""

    num_categories: int
    hidden: tuple[int, int] = (384, 192)
    template_agg: str = "max"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, search_tokens: jax.Array, template_tokens: jax.Array) -> jax.Array:
        if self.template_agg == "max":
            target = jnp.max(template_tokens, axis=1, keepdims=True)
        else:
            target = jnp.mean(template_tokens, axis=1, keepdims=True)
        target = jnp.broadcast_to(target, search_tokens.shape)
        h = jnp.concatenate([search_tokens, target], axis=-1)
        dense = functools.partial(nn.Dense, kernel_init=linear_init, bias_init=nn.initializers.zeros,
                                  dtype=self.dtype)
        h = gelu(dense(self.hidden[0], name="fc0")(h))
        h = gelu(dense(self.hidden[1], name="fc1")(h))
        logits = dense(self.num_categories, name="fc2")(h)
        return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


def gumbel_straight_through(rng: jax.Array, log_probs: jax.Array, tau: float = 1.0):
    """Hard Gumbel-Softmax: returns (hard one-hot, straight-through sample).

    The straight-through sample equals the one-hot in the forward pass (up to float
    rounding, as in torch's `y_hard - y_soft.detach() + y_soft`) and carries the soft
    sample's gradient.
    """
    gumbels = jax.random.gumbel(rng, log_probs.shape, log_probs.dtype)
    soft = jax.nn.softmax((log_probs + gumbels) / tau, axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), log_probs.shape[-1], dtype=soft.dtype)
    return hard, hard - jax.lax.stop_gradient(soft) + soft


def inference_decision(log_probs: jax.Array, threshold: jax.Array | float,
                       thresholdable: bool) -> jax.Array:
    """One-hot (B, Nx, K) decision at test time.

    threshold == 0: argmax. threshold > 0 (GRM's E_S/E_A form only): E_A when
    softmax(log_probs)[..., E_S] < threshold, else E_S.
    """
    k = log_probs.shape[-1]
    by_argmax = jnp.argmax(log_probs, axis=-1)
    if thresholdable:
        threshold = jnp.asarray(threshold, jnp.float32)
        by_threshold = (jax.nn.softmax(log_probs, axis=-1)[..., 0] < threshold).astype(by_argmax.dtype)
        by_argmax = jnp.where(threshold > 0, by_threshold, by_argmax)
    return jax.nn.one_hot(by_argmax, k, dtype=jnp.float32)
