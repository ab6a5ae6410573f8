"""OSTrack centre head (score / size / offset branches) and box decoding. NHWC."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

SIGMOID_CLAMP = (1e-4, 1.0 - 1e-4)


def _torch_default_bias(key, shape, dtype=jnp.float32, fan_in=1):
    bound = 1.0 / jnp.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class BatchNorm(nn.Module):
    """BatchNorm2d with PyTorch semantics over (B,H,W): batch statistics in training
    (running variance updated with the unbiased estimate, momentum 0.1), running
    statistics at inference. Variables: params {scale, bias}, batch_stats {mean, var}."""

    epsilon: float = 1e-5
    momentum: float = 0.1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,))
        ra_var = self.variable("batch_stats", "var", jnp.ones, (c,))
        if train:
            xf = x.astype(jnp.float32)
            mean = jnp.mean(xf, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(xf - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                unbiased = var * n / max(n - 1, 1)
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(self.dtype)


class Branch(nn.Module):
    """4 x [Conv3x3 -> BN -> ReLU] with C, C/2, C/4, C/8 channels, then Conv1x1 -> out."""

    channels: int
    out_channels: int
    bn_eps: float = 1e-5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        widths = [self.channels // (2 ** i) for i in range(4)]
        xavier = nn.initializers.xavier_uniform()
        for i, width in enumerate(widths, start=1):
            fan_in = x.shape[-1] * 9
            x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), kernel_init=xavier,
                        bias_init=lambda k, s, d=jnp.float32, f=fan_in: _torch_default_bias(k, s, d, f),
                        dtype=self.dtype, name=f"conv{i}")(x)
            x = jax.nn.relu(BatchNorm(self.bn_eps, dtype=self.dtype, name=f"bn{i}")(x, train))
        fan_in = x.shape[-1]
        return nn.Conv(self.out_channels, (1, 1), kernel_init=xavier,
                       bias_init=lambda k, s, d=jnp.float32, f=fan_in: _torch_default_bias(k, s, d, f),
                       dtype=self.dtype, name="conv5")(x)


class CenterHead(nn.Module):
    """Search feature grid (B,h,w,D) -> score (B,h,w,1), size (B,h,w,2), offset (B,h,w,2)."""

    channels: int = 256
    bn_eps: float = 1e-5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, features, train: bool = False):
        def branch(name, out):
            return Branch(self.channels, out, self.bn_eps, self.dtype, name=name)(features, train).astype(jnp.float32)

        score = jnp.clip(jax.nn.sigmoid(branch("ctr", 1)), *SIGMOID_CLAMP)
        size = jnp.clip(jax.nn.sigmoid(branch("size", 2)), *SIGMOID_CLAMP)
        offset = branch("offset", 2)
        return score, size, offset


def decode_boxes(score_map: jax.Array, size_map: jax.Array, offset_map: jax.Array) -> jax.Array:
    """Box at the score peak (first index on ties), as in OSTrack's `cal_bbox`.

    Args: score_map (B,h,w,1) (raw or Hann-windowed), size_map (B,h,w,2) (w,h normalized),
    offset_map (B,h,w,2) (x,y offsets in cells).
    Returns: (B,4) cx, cy, w, h normalized to [0,1] of the search crop.
    """
    b, h, w, _ = score_map.shape
    idx = jnp.argmax(score_map.reshape(b, h * w), axis=1)
    iy, ix = idx // w, idx % w
    size = size_map.reshape(b, h * w, 2)[jnp.arange(b), idx]
    offset = offset_map.reshape(b, h * w, 2)[jnp.arange(b), idx]
    cx = (ix.astype(jnp.float32) + offset[:, 0]) / w
    cy = (iy.astype(jnp.float32) + offset[:, 1]) / h
    return jnp.stack([cx, cy, size[:, 0], size[:, 1]], axis=-1)
