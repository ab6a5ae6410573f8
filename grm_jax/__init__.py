"""grm-jax: GRM (Generalized Relation Modeling, CVPR 2023) transformer tracker in JAX/Flax."""
from grm_jax.checkpoint import load_model, save_model
from grm_jax.model import GRM, ModelConfig, decode_boxes, init_variables, vit_base, vit_large

__version__ = "0.2.0"
__all__ = ["GRM", "ModelConfig", "decode_boxes", "init_variables", "load_model", "save_model",
           "vit_base", "vit_large"]
