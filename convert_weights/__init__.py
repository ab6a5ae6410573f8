"""Converters from official PyTorch weights (GRM trained checkpoints, MAE encoders)."""
from convert_weights.grm import convert_grm_checkpoint, infer_config, state_dict_to_variables
from convert_weights.mae import convert_mae_checkpoint, mae_to_variables, resize_pos_embed
from convert_weights.torch_state import CheckpointError, load_state_dict

__all__ = ["CheckpointError", "convert_grm_checkpoint", "convert_mae_checkpoint", "infer_config",
           "load_state_dict", "mae_to_variables", "resize_pos_embed", "state_dict_to_variables"]
