"""The two things training needs from outside ``grm_jax``, handed in by the caller.

``grm_jax`` imports neither ``data_pipelines`` nor ``convert_weights`` (docs/PACKAGES.md): both
import ``grm_jax``. The training loop still needs one function of each, so whoever starts training
passes them in a :class:`TrainParts`. The top-level ``launch.py`` (also the ``grm-jax`` command)
builds the real one; a test may pass its own.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from grm_jax.model.config import ModelConfig
    from grm_jax.run_config import RunConfig

__all__ = ["TrainParts"]


@dataclasses.dataclass(frozen=True)
class TrainParts:
    """make_iterator(run, local_batch, seed, shard_index, shard_count) -> the training batches of
    this process's shard: an iterator of dicts of numpy arrays (leading axis ``local_batch``) with
    ``get_state()`` / ``set_state(state)`` for checkpoints, and optionally ``close()``
    (``data_pipelines.pipeline.make_train_iterator``).

    read_mae(path, model_config, seed) -> the initial variables of the model, backbone from the
    MAE weights file at ``path`` (``convert_weights.mae.convert_mae_checkpoint``)."""

    make_iterator: Callable[[RunConfig, int, int, int, int], Iterator[dict[str, Any]]]
    read_mae: Callable[[str, ModelConfig, int], dict]
