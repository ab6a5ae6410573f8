"""Flax GRM model."""
from grm_jax.model.config import ModelConfig, vit_base, vit_large
from grm_jax.model.grm import GRM, abstract_variables, init_variables
from grm_jax.model.head import decode_boxes

__all__ = ["GRM", "ModelConfig", "abstract_variables", "decode_boxes", "init_variables", "vit_base", "vit_large"]
