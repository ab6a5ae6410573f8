"""Common interface of the training-data readers (one per dataset).

A *source* is a list of sequences. Sequence ``i`` has ``N_i`` frames, each with a box
(x1, y1, w, h) in pixels and two flags (spec 6):

* ``valid``: the box has w > 0 and h > 0 (COCO: w > 50 and h > 50);
* ``visible``: the target may be sampled in that frame (dataset-specific rules, see each reader).

Image datasets (COCO) are sources whose sequences have a single frame (``is_video`` False);
the pair sampler then uses that image twice.

Frames are read as *encoded bytes* (``frame_bytes``) and decoded with OpenCV
(:func:`decode_image`, BGR -> RGB, like the official ``opencv_loader``). The packed (ArrayRecord)
reader returns the very same bytes, so both give bit-identical images.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import threading
from typing import Sequence

import cv2
import numpy as np

from grm_jax.annotations import read_box_file, read_label_file

__all__ = [
    "SequenceInfo",
    "Source",
    "FileSource",
    "CorruptImageError",
    "decode_image",
    "read_number_table",
    "read_flag_list",
]


class CorruptImageError(ValueError):
    """An image file exists in a dataset but cannot be read/decoded."""


@dataclasses.dataclass(frozen=True)
class SequenceInfo:
    """Annotations of one sequence.

    boxes: (N, 4) float32 (x1, y1, w, h) pixels.
    valid: (N,) bool, box usable (positive size).
    visible: (N,) bool, frame may be sampled.
    """

    boxes: np.ndarray
    valid: np.ndarray
    visible: np.ndarray

    def __post_init__(self):
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4) or self.valid.shape != (n,) or self.visible.shape != (n,):
            raise ValueError(
                f"SequenceInfo: inconsistent shapes boxes {self.boxes.shape}, valid {self.valid.shape}, "
                f"visible {self.visible.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.boxes.shape[0])


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB. Raises CorruptImageError naming ``name``."""
    if not data:
        raise CorruptImageError(f"empty image file: {name}")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise CorruptImageError(f"cannot decode image: {name}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_number_table(path: str, columns: int = 4) -> np.ndarray:
    """(N, 4) float64 boxes from a text file (see grm_jax.annotations); errors name ``path``."""
    if columns != 4:
        raise ValueError(f"read_number_table supports 4 columns, got {columns}")
    return read_box_file(path)


def read_flag_list(path: str) -> np.ndarray:
    """Integer labels: one per line (GOT-10k) or one comma-separated line (LaSOT) -> int64 (N,)."""
    values = read_label_file(path)
    if values.size == 0:
        raise ValueError(f"malformed label file {path}: empty")
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise ValueError(f"malformed label file {path}: non-integer entries")
    return values.astype(np.int64)


def check_length(arr: np.ndarray, n: int, path: str) -> np.ndarray:
    if arr.shape[0] != n:
        raise ValueError(f"malformed label file {path}: {arr.shape[0]} entries but the ground truth has {n} frames")
    return arr


class Source:
    """Base class of all readers. Subclasses implement the ``_``-prefixed hooks.

    Public interface (what the sampler / processing / packer use):
      name: str; is_video: bool; len(source) / num_sequences; sequence_name(i);
      sequence_info(i) -> SequenceInfo; frame_path(i, f) -> str (an identifier for messages);
      frame_bytes(i, f) -> bytes; load_frame(i, f) -> (H, W, 3) uint8 RGB.
    sequence_info results are cached (LRU) per process.
    """

    name: str = "source"
    is_video: bool = True
    cache_size: int = 4096

    def __init__(self):
        self._cache: collections.OrderedDict[int, SequenceInfo] = collections.OrderedDict()
        self._lock = threading.Lock()

    # -- hooks -------------------------------------------------------------------------------
    def _sequence_names(self) -> Sequence[str]:
        raise NotImplementedError

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        raise NotImplementedError

    def frame_path(self, i: int, f: int) -> str:
        raise NotImplementedError

    # -- interface ---------------------------------------------------------------------------
    @property
    def num_sequences(self) -> int:
        return len(self._sequence_names())

    def __len__(self) -> int:
        return self.num_sequences

    def sequence_name(self, i: int) -> str:
        return self._sequence_names()[i]

    def sequence_names(self) -> list[str]:
        return list(self._sequence_names())

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
    """A source backed by a folder tree (root kept for messages)."""

    def __init__(self, root: str):
        super().__init__()
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{type(self).__name__}: dataset root is not a directory: {root}")
        self.root = root


def make_info(boxes: np.ndarray, visible_extra: np.ndarray | None, min_size: float = 0.0) -> SequenceInfo:
    """valid = (w > min_size) & (h > min_size); visible = valid & visible_extra."""
    boxes = np.asarray(boxes, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = (boxes[:, 2] > min_size) & (boxes[:, 3] > min_size)
    visible = valid.copy() if visible_extra is None else (valid & np.asarray(visible_extra, dtype=bool))
    return SequenceInfo(boxes=boxes, valid=valid, visible=visible)
