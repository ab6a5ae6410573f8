"""The generated sample dataset: GOT-10k layout (``train/`` and ``val/`` with list.txt,
groundtruth.txt, absence.label and cover.label per sequence), written on first use into its
cache folder by :func:`grm_jax.datasets.sample_generator.ensure_sample_dataset`.

Names: ``sample_train`` is every sequence of ``train/list.txt`` (GOT-10k visibility rules);
``sample_val`` is the ``val/`` split, evaluated like GOT-10k validation (AO / SR). The cache
folder is ``config.data.roots.sample``; unset, it is :data:`DEFAULT_SAMPLE_ROOT`.
"""
from __future__ import annotations

import os
from typing import Iterable

from grm_jax.datasets.got10k import Got10kSource, load_got10k
from grm_jax.datasets.sample_generator import ensure_sample_dataset
from grm_jax.datasets.sequence import Sequence

__all__ = ["DEFAULT_SAMPLE_ROOT", "SampleSource", "load_sample_val", "ensure_sample"]

DEFAULT_SAMPLE_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "grm_jax", "sample_dataset")


def ensure_sample(root=None, seed: int | None = None) -> str:
    """Generate the sample dataset into ``root`` (default :data:`DEFAULT_SAMPLE_ROOT`) unless it is
    already there; returns the folder."""
    root = DEFAULT_SAMPLE_ROOT if root is None else root
    return ensure_sample_dataset(root) if seed is None else ensure_sample_dataset(root, seed=seed)


class SampleSource(Got10kSource):
    """Training reader of the sample dataset; split 'train' (sample_train) or 'val'."""

    def __init__(self, root=None, split: str = "train", seed: int | None = None):
        if split not in ("train", "val"):
            raise ValueError(f"SampleSource: split must be 'train' or 'val', got {split!r}")
        super().__init__(ensure_sample(root, seed), split="val" if split == "val" else "all",
                         name=f"sample_{split}")


def load_sample_val(root=None, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Benchmark sequences of the sample validation split (generated first when absent)."""
    return load_got10k(ensure_sample(root), "val", sequences, dataset="sample_val")
