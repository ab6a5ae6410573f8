"""The generator of the sample dataset (:mod:`.sample`).

Every dataset reader, for training and evaluation, is in :mod:`grm_jax.datasets`
(``training_source(name, root)`` builds a training reader, a packed root included).
"""
from data_pipelines.sources.sample import ensure_sample_dataset

__all__ = ["ensure_sample_dataset"]
