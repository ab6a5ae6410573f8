"""Training-data readers: one per dataset, one interface (:class:`Source`).

``make_source(name, root)`` builds a reader from a dataset name:

=====================  ==============================================================
name                   reader
=====================  ==============================================================
got10k_train_full      GOT-10k, all training sequences (official ``GOT10K_train_full``)
got10k_vot_train       GOT-10k, VOT-excluded split (official ``GOT10K_vottrain``)
got10k                 GOT-10k-layout folder, every sequence of ``train/list.txt``
lasot                  LaSOT training split (1120 sequences)
trackingnet            TrackingNet TRAIN_0..TRAIN_11 (the chunks present)
coco                   COCO 2017 train, one image "sequence" per non-crowd object
sample                 the bundled synthetic dataset (``root`` = cache folder)
=====================  ==============================================================

Aliases: ``lasot_train``, ``coco_train``, ``trackingnet_train``, ``got10k_train`` (= got10k_train_full),
``got10k_vottrain`` (= got10k_vot_train).

If ``root`` holds a packed dataset (``grm_pack.json``, written by ``python -m data_pipelines.pack``)
the packed ArrayRecord reader is returned instead; it yields the same sequences and bytes.
"""
from __future__ import annotations

import os

from data_pipelines.sources.base import (CorruptImageError, FileSource, SequenceInfo, Source, decode_image)
from data_pipelines.sources.coco import CocoSource
from data_pipelines.sources.got10k import Got10kSource
from data_pipelines.sources.lasot import LasotSource
from data_pipelines.sources.packed import PACK_META, PackedSource
from data_pipelines.sources.sample import SampleSource, ensure_sample_dataset
from data_pipelines.sources.trackingnet import TrackingNetSource

__all__ = [
    "Source", "FileSource", "SequenceInfo", "CorruptImageError", "decode_image",
    "Got10kSource", "LasotSource", "TrackingNetSource", "CocoSource", "SampleSource",
    "PackedSource", "ensure_sample_dataset", "make_source", "DATASET_NAMES", "ALIASES", "canonical_name",
    "root_key",
]

DATASET_NAMES = ("got10k_train_full", "got10k_vot_train", "got10k", "lasot", "trackingnet", "coco", "sample")
ALIASES = {"lasot_train": "lasot", "coco_train": "coco", "coco2017": "coco", "trackingnet_train": "trackingnet",
           "got10k_train": "got10k_train_full", "got10k_vottrain": "got10k_vot_train"}


def canonical_name(name: str) -> str:
    """Dataset name with aliases resolved; ValueError for unknown names."""
    n = ALIASES.get(name, name)
    if n not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES + tuple(ALIASES))}")
    return n


def root_key(name: str) -> str:
    """Which ``config.data.roots`` entry a dataset name reads (got10k_* -> 'got10k')."""
    name = canonical_name(name)
    if name.startswith("got10k"):
        return "got10k"
    if name == "sample":
        return "sample"
    return name


def make_source(name: str, root: str | os.PathLike | None) -> Source:
    """Reader for dataset ``name`` (see module doc) at ``root``; a packed root gives the packed reader."""
    name = canonical_name(name)
    if root is None:
        raise ValueError(f"dataset {name!r}: no root folder configured (config.data.roots.{root_key(name)})")
    root = os.fspath(root)
    if os.path.isfile(os.path.join(root, PACK_META)):
        src = PackedSource(root)
        if src.name != name and not (name == "sample" and src.name.startswith("sample")):
            raise ValueError(f"packed dataset at {root} holds {src.name!r}, but {name!r} was requested")
        return src
    if name == "got10k_train_full":
        return Got10kSource(root, split="train_full")
    if name == "got10k_vot_train":
        return Got10kSource(root, split="vot_train")
    if name == "got10k":
        return Got10kSource(root, split="all", name="got10k")
    if name == "lasot":
        return LasotSource(root)
    if name == "trackingnet":
        return TrackingNetSource(root)
    if name == "coco":
        return CocoSource(root)
    return SampleSource(root, split="train")
