"""The GRM network: ViT backbone with adaptive token division + centre head."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from grm_jax.model.config import ModelConfig
from grm_jax.model.head import CenterHead, decode_boxes
from grm_jax.model.vit import Backbone


class GRM(nn.Module):
    """`apply(variables, template, search, threshold=0.0, train=False)`.

    Inputs: template (B,T,T,3), search (B,S,S,3) float32, ImageNet-normalized RGB, NHWC.
    threshold: 0 -> argmax division; t > 0 -> E_A when P(E_S) < t (may be a traced scalar).
    train: Gumbel straight-through division, drop path, BatchNorm batch statistics; needs
      rngs {'gumbel', 'dropout'} and mutable=['batch_stats'].

    Returns a dict:
      score_map (B,h,w,1), size_map (B,h,w,2), offset_map (B,h,w,2),
      boxes (B,4) cx,cy,w,h normalized to the search crop, from the un-windowed score map,
      decisions: list (one per dividing block) of (B,Nx) float, 1 where the token is in E_A,
      log_probs: list of (B,Nx,K) division log-probabilities (predicting blocks only),
      backbone_tokens (B,Nz+Nx,D) after the final LayerNorm.
    """

    config: ModelConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, template: jax.Array, search: jax.Array, threshold=0.0, train: bool = False):
        cfg = self.config
        tokens, divisions = Backbone(cfg, self.dtype, name="backbone")(template, search, threshold, train)
        g = cfg.search_grid
        features = tokens[:, -cfg.num_search_tokens:].reshape(tokens.shape[0], g, g, cfg.embed_dim)
        score, size, offset = CenterHead(cfg.head_channels, cfg.batchnorm_eps, self.dtype,
                                         name="box_head")(features, train)
        return {
            "score_map": score,
            "size_map": size,
            "offset_map": offset,
            "boxes": decode_boxes(score, size, offset),
            "decisions": [d["ea"] for d in divisions],
            "hard_decisions": [d["hard"] for d in divisions if "hard" in d],
            "log_probs": [d["log_probs"] for d in divisions if "log_probs" in d],
            "backbone_tokens": tokens,
        }


def init_variables(model: GRM, rng: jax.Array, batch_size: int = 1):
    """Random-initialized variables {'params', 'batch_stats'} for `model`."""
    cfg = model.config
    template = jnp.zeros((batch_size, cfg.template_size, cfg.template_size, 3), jnp.float32)
    search = jnp.zeros((batch_size, cfg.search_size, cfg.search_size, 3), jnp.float32)
    return jax.jit(model.init)({"params": rng}, template, search)


def abstract_variables(model: GRM):
    """Shape/dtype tree of the variables (for restoring checkpoints) without allocating."""
    return jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0)))
