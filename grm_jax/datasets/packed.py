"""Packed layout: a training set written by ``python -m data_pipelines.pack``.

    <root>/grm_pack.json     format tag, registry name of the packed set, is_video, the tfds
                             builder folder (relative to root), counts
    <root>/sequences.npz     names, seq_offset (S+1,) frame offsets, per frame: boxes (float32),
                             valid, visible and frame_record (ArrayRecord index of the frame's
                             encoded bytes, -1 when the frame was not packed)
    <root>/<builder_dir>/    tfds dataset (array_record files, records in frame order): image =
                             the original encoded file bytes, key = path relative to the
                             original dataset root

Frames come back as the same bytes the folder reader reads, so with the same sampler seed both
readers produce identical training pairs.
"""
from __future__ import annotations

import json
import os

import numpy as np

from grm_jax.datasets.source import CorruptImageError, SequenceInfo, Source
from grm_jax.errors import DataError, MissingFileError

__all__ = ["PackedSource", "PACK_META", "PACK_INDEX", "PACK_FORMAT", "is_packed"]

PACK_META = "grm_pack.json"
PACK_INDEX = "sequences.npz"
PACK_FORMAT = "grm-jax-pack-v1"


def is_packed(root) -> bool:
    """True when ``root`` holds a packed dataset."""
    return root is not None and os.path.isfile(os.path.join(os.fspath(root), PACK_META))


def _read_meta(meta_path: str) -> dict:
    try:
        with open(meta_path, "r", encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != PACK_FORMAT:
            raise ValueError(f"format {meta.get('format')!r} != {PACK_FORMAT!r}")
        return {"name": str(meta["name"]), "is_video": bool(meta["is_video"]),
                "builder_dir": str(meta["builder_dir"])}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"packed dataset: malformed {meta_path}: {e}") from None


class PackedSource(Source):
    def __init__(self, root):
        super().__init__()
        root = os.path.abspath(os.fspath(root))
        meta_path, index_path = os.path.join(root, PACK_META), os.path.join(root, PACK_INDEX)
        for p in (meta_path, index_path):
            if not os.path.isfile(p):
                raise MissingFileError(f"packed dataset: missing {p}")
        meta = _read_meta(meta_path)
        self.name, self.is_video = meta["name"], meta["is_video"]
        self.builder_dir = os.path.join(root, meta["builder_dir"])
        try:
            with np.load(index_path, allow_pickle=False) as z:
                self._names = [str(s) for s in z["names"]]
                self._offsets = z["seq_offset"].astype(np.int64)
                self._boxes = z["boxes"].astype(np.float32)
                self._valid = z["valid"].astype(bool)
                self._visible = z["visible"].astype(bool)
                self._frame_record = z["frame_record"].astype(np.int64)
        except (KeyError, ValueError, OSError) as e:
            raise DataError(f"packed dataset: malformed {index_path}: {e}") from None
        total = int(self._offsets[-1])
        if (self._offsets.shape != (len(self._names) + 1,) or self._boxes.shape != (total, 4)
                or self._frame_record.shape != (total,)):
            raise DataError(f"packed dataset: inconsistent arrays in {index_path}")
        if not os.path.isdir(self.builder_dir):
            raise MissingFileError(f"packed dataset: missing tfds folder {self.builder_dir}")
        self.root = root
        self._ds = None

    def _data_source(self):
        if self._ds is None:
            import tensorflow_datasets as tfds  # noqa: PLC0415  (only processes that read frames)

            self._ds = tfds.builder_from_directory(self.builder_dir).as_data_source(split="train")
        return self._ds

    def __getstate__(self):
        state = super().__getstate__()
        state["_ds"] = None  # reopened lazily in each worker process
        return state

    def _sequence_names(self):
        return self._names

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return SequenceInfo(boxes=self._boxes[a:b].copy(), valid=self._valid[a:b].copy(),
                            visible=self._visible[a:b].copy())

    def frame_path(self, i: int, f: int) -> str:
        return f"{self.root}::{self._names[i]}/{int(f)}"

    def record_index(self, i: int, f: int) -> int:
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        if not 0 <= f < b - a:
            raise IndexError(f"{self.name}: frame {f} out of range for sequence {self._names[i]} ({b - a} frames)")
        return int(self._frame_record[a + f])

    def frame_bytes(self, i: int, f: int) -> bytes:
        rec = self.record_index(i, f)
        if rec < 0:
            raise CorruptImageError(f"frame not stored in the packed dataset: {self.frame_path(i, f)}")
        return bytes(self._data_source()[rec]["image"])
