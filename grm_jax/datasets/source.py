"""What training reads: a *source* is a list of sequences with per-frame boxes and flags.

Sequence ``i`` has ``N_i`` frames; frame ``f`` has a box (x1, y1, w, h) in pixels and two flags:

* ``valid``: the box has w > 0 and h > 0 (COCO: both above 50 px);
* ``visible``: the pair sampler may pick the frame: valid AND the dataset's own visibility rule
  (each reader's docstring states it). Only video datasets are filtered by it: for image
  datasets (COCO) the sampler, like the official one, takes every sequence.

Image datasets (COCO) are sources whose sequences have a single frame (``is_video`` False); the
pair sampler then uses that image as template and search.

Frames are read as *encoded bytes* (``frame_bytes``) and decoded with OpenCV into RGB
(:func:`grm_jax.datasets.decode.decode_image`). The packed reader returns the very same bytes as
the folder readers, so both give bit-identical images.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import threading
from typing import Sequence

import numpy as np

from grm_jax.datasets.decode import CorruptImageError, decode_image, decode_reduced
from grm_jax.errors import MissingFileError

__all__ = ["SequenceInfo", "Source", "FileSource", "CorruptImageError", "decode_image", "make_info"]


@dataclasses.dataclass(frozen=True)
class SequenceInfo:
    """Annotations of one training sequence.

    boxes: (N, 4) float32 (x1, y1, w, h) pixels; valid: (N,) bool box usable (positive size);
    visible: (N,) bool the frame may be sampled.
    """

    boxes: np.ndarray
    valid: np.ndarray
    visible: np.ndarray

    def __post_init__(self):
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4) or self.valid.shape != (n,) or self.visible.shape != (n,):
            raise ValueError(f"SequenceInfo: inconsistent shapes boxes {self.boxes.shape}, valid "
                             f"{self.valid.shape}, visible {self.visible.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.boxes.shape[0])


def make_info(boxes: np.ndarray, visible_extra: np.ndarray | None, min_size: float = 0.0) -> SequenceInfo:
    """valid = (w > min_size) & (h > min_size) (NaN boxes are not valid);
    visible = valid & visible_extra (visible_extra None: visible = valid)."""
    boxes = np.asarray(boxes, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = (boxes[:, 2] > min_size) & (boxes[:, 3] > min_size)
    visible = valid.copy() if visible_extra is None else (valid & np.asarray(visible_extra, dtype=bool))
    return SequenceInfo(boxes=boxes, valid=valid, visible=visible)


class Source:
    """Base class of the training readers; subclasses implement the ``_``-prefixed hooks and
    ``frame_path``.

    Interface used by the sampler, the processing and the packer: ``name`` (the registry name),
    ``is_video``, ``len(source)`` / ``num_sequences``, ``sequence_name(i)``,
    ``sequence_info(i) -> SequenceInfo`` (LRU-cached per process), ``frame_path(i, f)`` (an
    identifier used in messages), ``frame_bytes(i, f)``, ``load_frame(i, f)`` -> (H, W, 3) uint8 RGB,
    ``load_frame_reduced(i, f, k)`` (the frame at 1/k size, for ``data.reduced_decode``).
    """

    name: str = "source"
    is_video: bool = True
    cache_size: int = 4096

    def __init__(self):
        self._cache: collections.OrderedDict[int, SequenceInfo] = collections.OrderedDict()
        self._lock = threading.Lock()

    # -- hooks ------------------------------------------------------------------------------
    def _sequence_names(self) -> Sequence[str]:
        raise NotImplementedError

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        raise NotImplementedError

    def frame_path(self, i: int, f: int) -> str:
        raise NotImplementedError

    # -- interface --------------------------------------------------------------------------
    @property
    def num_sequences(self) -> int:
        return len(self._sequence_names())

    def __len__(self) -> int:
        return self.num_sequences

    def sequence_name(self, i: int) -> str:
        return self._sequence_names()[i]

    def sequence_info(self, i: int) -> SequenceInfo:
        i = int(i)
        if not 0 <= i < self.num_sequences:
            raise IndexError(f"{self.name}: sequence index {i} out of range [0, {self.num_sequences})")
        with self._lock:
            hit = self._cache.get(i)
            if hit is not None:
                self._cache.move_to_end(i)
                return hit
        info = self._read_sequence_info(i)
        with self._lock:
            self._cache[i] = info
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return info

    def frame_bytes(self, i: int, f: int) -> bytes:
        path = self.frame_path(i, f)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError as e:
            raise CorruptImageError(f"cannot read image file: {path} ({e.strerror or e})") from None

    def load_frame(self, i: int, f: int) -> np.ndarray:
        return decode_image(self.frame_bytes(i, f), self.frame_path(i, f))

    def load_frame_reduced(self, i: int, f: int, reduce: int) -> tuple[np.ndarray, int, tuple[int, int]]:
        """(image at 1/k size, k, full (H, W)): see :func:`grm_jax.datasets.decode.decode_reduced`."""
        return decode_reduced(self.frame_bytes(i, f), self.frame_path(i, f), reduce)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = collections.OrderedDict()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sequences={self.num_sequences})"


class FileSource(Source):
    """A source read from a folder tree; ``root`` is kept for messages and packing keys."""

    def __init__(self, root, name: str):
        super().__init__()
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise MissingFileError(f"{name}: dataset root folder does not exist: {root}")
        self.root = root
        self.name = name
