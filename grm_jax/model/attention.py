"""Self-attention over [template ; search] tokens with GRM's category policy.

A *policy* is a (B, N, 3) array of (one-hot, or straight-through) category weights per
token; columns are E_T (template side), E_S (search-only) and E_A (attends to all).
Template tokens are always [1, 0, 0]. Token i may attend to token j when

    M_ij = T_i (T_j + A_j) + S_i (S_j + A_j) + A_i (T_j + S_j + A_j),   M_ii = 1.

Three implementations, numerically equal up to the official softmax epsilon (~1e-6):
- `masked_attention`: one dense N x N masked softmax, the official formula. The mask is
  a float product of the policy, so gradients reach the division predictor (training,
  and the reference for the other two).
- `separate_attention`: one attention per query category with a per-key mask (exact
  -inf masking, `jax.nn.dot_product_attention`), no N x N mask (inference only).
- `fused_attention`: one `jax.nn.dot_product_attention` call over all queries with a
  boolean (B, 1, N, N) mask gathered once per block from the token categories; no float
  mask, no per-head mask (inference only: the division must be one-hot). Config values
  'fused' (jax's default implementation) and 'fused_cudnn' (cuDNN, NVIDIA + bfloat16).

`inference_attention(backend)` names the implementation trackers use on each backend.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# RELATION_RULE[c_query, c_key] = 1 when a query of category c_query may see keys of c_key.
# numpy (not jnp): importing grm_jax must not start the XLA backend before jax.distributed.initialize.
RELATION_RULE = np.array([[1.0, 0.0, 1.0],
                          [0.0, 1.0, 1.0],
                          [1.0, 1.0, 1.0]], np.float32)
SOFTMAX_EPS = 1e-6
# Layout of q/k/v in the dense paths ('masked', training, first block): True = token-major
# (B,N,H,hd) with `masked_attention_tokens`; False = head-major (B,H,N,hd), the layout of the
# official code. Same numbers; benchmarks/train_ab.py compares the two.
TOKEN_MAJOR = True

# ModelConfig.attention values that run `fused_attention` at inference -> its `implementation`.
# 'fused_cudnn' asks for cuDNN's fused kernel (NVIDIA, bfloat16 compute); not verified on a GPU yet.
FUSED_IMPLS = {"fused": None, "fused_cudnn": "cudnn"}

# Implementation used for tracking/evaluation per jax backend (the checkpoint's ModelConfig.attention
# is left as saved; trackers replace it). cpu: 'masked' measured fastest (ViT-B 256, batch 1, fp32:
# fused 2-8 % slower, separate 10-20 % slower; benchmarks/RESULTS.md). gpu/tpu: 'fused' (one
# dot_product_attention, no float mask) is the accelerator choice, not yet measured on either.
INFERENCE_ATTENTION = {"cpu": "masked", "gpu": "fused", "tpu": "fused"}


def inference_attention(backend: str | None = None) -> str:
    """The attention implementation for tracking on ``backend`` (default: jax's default backend)."""
    if backend is None:
        backend = jax.default_backend()
    return INFERENCE_ATTENTION.get(str(backend).lower(), "fused")


def policy_mask(policy: jax.Array) -> jax.Array:
    """(B, N, 3) policy -> (B, N, N) float mask (rows = queries), diagonal forced to 1."""
    mask = jnp.einsum("bia,ac,bjc->bij", policy, jnp.asarray(RELATION_RULE, policy.dtype), policy,
                      precision=jax.lax.Precision.HIGHEST)
    eye = jnp.eye(policy.shape[1], dtype=policy.dtype)
    return mask + (1.0 - mask) * eye


def masked_softmax(logits: jax.Array, mask: jax.Array, eps: float = SOFTMAX_EPS) -> jax.Array:
    """Official `softmax_with_policy`: logits (B,H,N,N), mask (B,N,N) float.

    The row max is taken over ALL keys; masked keys keep a weight of (eps/N)/(rowsum+eps).
    """
    n = logits.shape[-1]
    logits = logits.astype(jnp.float32)
    logits = logits - jnp.max(logits, axis=-1, keepdims=True)
    w = jnp.exp(logits) * mask[:, None].astype(jnp.float32)
    return (w + eps / n) / (jnp.sum(w, axis=-1, keepdims=True) + eps)


def split_heads(qkv: jax.Array, num_heads: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(B, N, 3D) projections (rows q | k | v, heads contiguous) -> 3 x (B, H, N, hd)."""
    b, n, three_d = qkv.shape
    qkv = qkv.reshape(b, n, 3, num_heads, three_d // (3 * num_heads))
    qkv = qkv.transpose(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def merge_heads(x: jax.Array) -> jax.Array:
    """(B, H, N, hd) -> (B, N, H*hd)."""
    b, h, n, hd = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, n, h * hd)


def attention_logits(q: jax.Array, k: jax.Array) -> jax.Array:
    """(q k^T) * hd^-0.5 in the official order (scale after the product)."""
    return jnp.einsum("bhqd,bhkd->bhqk", q, k) * (q.shape[-1] ** -0.5)


def full_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Plain softmax attention, (B,H,N,hd) in and out."""
    probs = jax.nn.softmax(attention_logits(q, k).astype(jnp.float32), axis=-1)
    return jnp.einsum("bhqk,bhkd->bhqd", probs.astype(v.dtype), v)


def masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, policy: jax.Array) -> jax.Array:
    """Dense masked attention with the official epsilon-softmax. Shapes (B,H,N,hd)."""
    probs = masked_softmax(attention_logits(q, k), policy_mask(policy))
    return jnp.einsum("bhqk,bhkd->bhqd", probs.astype(v.dtype), v)


def masked_attention_tokens(q: jax.Array, k: jax.Array, v: jax.Array, policy: jax.Array | None) -> jax.Array:
    """`masked_attention` (policy given) or `full_attention` (policy None) on token-major (B,N,H,hd)
    q/k/v, returning (B,N,H,hd): the head axis is never moved in front of the tokens, so neither the
    split of the projections nor the merge before the output projection copies a transpose."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (q.shape[-1] ** -0.5)
    if policy is None:
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    else:
        probs = masked_softmax(logits, policy_mask(policy))
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


def separate_attention(q: jax.Array, k: jax.Array, v: jax.Array, policy: jax.Array,
                       num_template: int, search_categories: tuple[int, ...]) -> jax.Array:
    """Per-category attention: template queries, then search queries once per category.

    Each call uses a (B, N) key mask (no N x N mask). Search outputs are combined with the
    (one-hot) search policy. Shapes (B,H,N,hd); policy (B,N,3) one-hot.
    """
    to_bthd = lambda t: t.transpose(0, 2, 1, 3)  # (B,H,N,hd) -> (B,N,H,hd)
    qt, kt, vt = to_bthd(q), to_bthd(k), to_bthd(v)
    rule = jnp.asarray(RELATION_RULE, policy.dtype)

    def attend(queries, category):
        key_ok = jnp.einsum("c,bjc->bj", rule[category], policy) > 0  # (B, N)
        return jax.nn.dot_product_attention(queries, kt, vt, mask=key_ok[:, None, None, :])

    out_z = attend(qt[:, :num_template], 0)
    qx = qt[:, num_template:]
    px = policy[:, num_template:]
    out_x = sum(px[..., c, None, None].astype(q.dtype) * attend(qx, c) for c in search_categories)
    return to_bthd(jnp.concatenate([out_z, out_x], axis=1))


def token_categories(policy: jax.Array) -> jax.Array:
    """(B, N, 3) one-hot policy -> (B, N) int32 category (0 = E_T, 1 = E_S, 2 = E_A)."""
    return jnp.argmax(policy, axis=-1).astype(jnp.int32)


def category_mask(categories: jax.Array) -> jax.Array:
    """(B, N) int categories -> (B, 1, N, N) bool, True where query i may attend to key j.

    A gather from the 3 x 3 relation rule; its diagonal is all ones, so M_ii = 1 holds without an
    explicit identity. The head axis has size 1 (broadcast), so the mask exists once per block.
    """
    rule = jnp.asarray(RELATION_RULE > 0)
    return rule[categories[:, :, None], categories[:, None, :]][:, None]


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                    implementation: str | None = None) -> jax.Array:
    """`jax.nn.dot_product_attention` on (B, N, H, hd) q/k/v (token-major, no head transpose).

    mask: (B, 1, N, N) bool from `category_mask`, or None for plain full attention. Masked keys
    get exactly zero weight (the official formula leaves them ~1e-6 / N). implementation: None
    (jax picks; in jax 0.10 that is its XLA path on every backend) or 'cudnn' (cuDNN fused
    attention: NVIDIA GPUs, bfloat16/float16 only). Returns (B, N, H, hd).
    """
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


def split_heads_tokens(qkv: jax.Array, num_heads: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(B, N, 3D) projections -> 3 x (B, N, H, hd) (the layout `fused_attention` takes)."""
    b, n, three_d = qkv.shape
    qkv = qkv.reshape(b, n, 3, num_heads, three_d // (3 * num_heads))
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
