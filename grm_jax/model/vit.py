"""ViT backbone of GRM: patch embedding, two position tables, pre-norm blocks.

Images are NHWC float32, already normalized. Tokens are row-major per image and
concatenated template first: [z (Nz) ; x (Nx)], N = Nz + Nx.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from grm_jax.model import attention as attn_lib
from grm_jax.model.config import ModelConfig
from grm_jax.model.division import DivisionPredictor, gelu, gumbel_straight_through, inference_decision, linear_init


def _dense(features, name, dtype):
    return nn.Dense(features, kernel_init=linear_init, bias_init=nn.initializers.zeros, dtype=dtype, name=name)


class Attention(nn.Module):
    """Multi-head self-attention; in a dividing block it also decides search categories.

    Returns (output (B,N,D), division dict or None). The division dict holds `ea`
    (B,Nx) 1 where the token is in E_A, `log_probs` (B,Nx,K) when predicted.
    """

    config: ModelConfig
    divide: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, threshold, train: bool):
        cfg = self.config
        b, n, d = x.shape
        nz = cfg.num_template_tokens
        fused = cfg.attention in attn_lib.FUSED_IMPLS and not train
        impl = attn_lib.FUSED_IMPLS.get(cfg.attention)
        separate = cfg.attention == "separate" and not train
        tokens = fused or (attn_lib.TOKEN_MAJOR and not separate)  # (B,N,H,hd): no head transposes
        dense = attn_lib.masked_attention_tokens if tokens else None
        split = attn_lib.split_heads_tokens if tokens else attn_lib.split_heads
        q, k, v = split(_dense(3 * d, "qkv", self.dtype)(x), cfg.num_heads)

        division = None
        if not self.divide or cfg.search_categories == (2,):
            # first block, or one-stream form
            if fused:
                out = attn_lib.fused_attention(q, k, v, None, impl)
            else:
                out = dense(q, k, v, None) if tokens else attn_lib.full_attention(q, k, v)
            if self.divide:
                division = {"ea": jnp.ones((b, n - nz), jnp.float32)}
        else:
            cats = cfg.search_categories
            select = jax.nn.one_hot(jnp.array(cats), 3, dtype=jnp.float32)  # (K, 3)
            if cfg.predicts_division:
                log_probs = DivisionPredictor(len(cats), cfg.predictor_hidden, cfg.template_agg,
                                              dtype=self.dtype, name="divide_predict")(x[:, nz:], x[:, :nz])
                if train:
                    hard, soft = gumbel_straight_through(self.make_rng("gumbel"), log_probs)
                else:
                    hard = soft = inference_decision(log_probs, threshold, thresholdable=cats == (1, 2))
                division = {"log_probs": log_probs}
            else:  # fixed single category (two-stream)
                hard = soft = jnp.ones((b, n - nz, 1), jnp.float32)
            policy_x = soft @ select  # (B, Nx, 3), straight-through in training
            policy_z = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), (b, nz, 3))
            policy = jnp.concatenate([policy_z, policy_x], axis=1)
            if fused:
                mask = attn_lib.category_mask(attn_lib.token_categories(policy))
                out = attn_lib.fused_attention(q, k, v, mask, impl)
            elif separate:
                out = attn_lib.separate_attention(q, k, v, policy, nz, cats)
            else:
                out = dense(q, k, v, policy) if tokens else attn_lib.masked_attention(q, k, v, policy)
            division = {**(division or {}), "ea": (hard @ select)[..., 2], "hard": hard}
        out = out.reshape(b, n, d) if tokens else attn_lib.merge_heads(out)
        out = _dense(d, "proj", self.dtype)(out)
        return out, division


class DropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample (rng stream 'dropout')."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class Block(nn.Module):
    """Pre-norm ViT block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    config: ModelConfig
    divide: bool
    drop_path: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, threshold, train: bool):
        cfg = self.config
        norm = functools.partial(nn.LayerNorm, epsilon=cfg.layernorm_eps, dtype=self.dtype)
        h, division = Attention(cfg, self.divide, self.dtype, name="attn")(norm(name="norm1")(x), threshold, train)
        x = x + DropPath(self.drop_path, name="drop_path1")(h, train)
        h = norm(name="norm2")(x)
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        h = _dense(cfg.embed_dim, "fc2", self.dtype)(gelu(_dense(hidden, "fc1", self.dtype)(h)))
        x = x + DropPath(self.drop_path, name="drop_path2")(h, train)
        return x, division


class Backbone(nn.Module):
    """Patch embed + position tables + blocks + final LayerNorm.

    template (B,T,T,3), search (B,S,S,3) -> tokens (B, Nz+Nx, D), list of per-dividing-block
    division dicts (in block order).
    """

    config: ModelConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, template, search, threshold=0.0, train: bool = False):
        cfg = self.config
        d, p = cfg.embed_dim, cfg.patch_size
        embed = nn.Conv(d, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="patch_embed")
        pos_init = nn.initializers.truncated_normal(0.02)
        pos_z = self.param("pos_embed_z", pos_init, (1, cfg.num_template_tokens, d))
        pos_x = self.param("pos_embed_x", pos_init, (1, cfg.num_search_tokens, d))
        z = embed(template.astype(self.dtype))
        x = embed(search.astype(self.dtype))
        z = z.reshape(z.shape[0], -1, d) + pos_z.astype(self.dtype)
        x = x.reshape(x.shape[0], -1, d) + pos_x.astype(self.dtype)
        tokens = jnp.concatenate([z, x], axis=1)

        rates = np.linspace(0.0, cfg.drop_path_rate, cfg.depth)
        divisions = []
        for i in range(cfg.depth):
            block = Block(cfg, i in cfg.divide_layers, float(rates[i]), self.dtype, name=f"blocks_{i}")
            tokens, division = block(tokens, threshold, train)
            if division is not None:
                divisions.append(division)
        tokens = nn.LayerNorm(epsilon=cfg.layernorm_eps, dtype=self.dtype, name="norm")(tokens)
        return tokens, divisions
