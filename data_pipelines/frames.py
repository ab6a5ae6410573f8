"""The frames of a training pair as the processing reads them (data_pipelines/processing.py).

A :class:`PairFrame` is one sampled frame; when the sampler picks the same frame for the template
and the search crop, both read one PairFrame, so the frame is decoded (and turned grey) once.

* Exact (the default, the official pixels): the frame is decoded at full size before the
  processing (``PairFrame(image)``).
* ``data.reduced_decode=True`` (changes pixels; off by default): the frame is decoded only when
  its crop is made, at 1/k of its size (libjpeg DCT scaling, ``grm_jax.datasets.decode``), with k
  the largest of 1, 2, 4, 8 for which the crop, side ``factor * sqrt(w * h)`` of the jittered box,
  still spans at least ``output size`` pixels of the reduced frame (:func:`decode_reduction`): the
  crop is still down-sampled (or kept), never up-sampled. Boxes are divided by k (exact in
  float32: k is a power of two). Frames whose objects are small (crop side < 2 x output size) are
  decoded at full size and give the exact crops.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import cv2
import numpy as np

from grm_jax.datasets.decode import REDUCTIONS

__all__ = ["PairFrame", "decode_reduction", "to_gray3"]


def to_gray3(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the grey image (``cv2.COLOR_RGB2GRAY``) stacked to 3 channels."""
    g = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.stack([g, g, g], axis=2)


def decode_reduction(box_wh, factor: float, output_size: int) -> int:
    """The largest k in (1, 2, 4, 8) with sqrt(w * h) * factor / k >= output_size (see module doc)."""
    side = math.sqrt(max(float(box_wh[0]) * float(box_wh[1]), 0.0)) * float(factor)
    if not math.isfinite(side):
        return 1
    return max(k for k in REDUCTIONS if k == 1 or side >= output_size * k)


class PairFrame:
    """One frame of a training pair: a decoded (H, W, 3) uint8 RGB ``image``, or a ``loader``
    ``reduce -> (image at 1/k size, k, full (H, W))`` called when a crop needs the frame."""

    def __init__(self, image: np.ndarray | None = None,
                 loader: Callable[[int], tuple[np.ndarray, int, tuple[int, int]]] | None = None):
        if (image is None) == (loader is None):
            raise ValueError("PairFrame: give a decoded image or a loader, not both")
        self._decoded: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}
        self._gray: dict[int, np.ndarray] = {}
        self._loader = loader
        if image is not None:
            self._decoded[1] = (image, tuple(image.shape[:2]))

    @classmethod
    def from_source(cls, source, sequence: int, frame: int) -> "PairFrame":
        """Frame ``frame`` of ``sequence`` of a training source, decoded when a crop asks for it."""
        return cls(loader=functools.partial(source.load_frame_reduced, sequence, frame))

    def get(self, reduce: int, gray: bool) -> tuple[np.ndarray, int, tuple[int, int]]:
        """(image, k, full (H, W)): the frame at 1/k size, k <= ``reduce`` (a finer decode already
        made is reused), grey (:func:`to_gray3`) when ``gray``."""
        finer = [k for k in self._decoded if k <= reduce]
        if finer:
            k = max(finer)
        else:
            image, k, full_hw = self._loader(reduce)
            self._decoded[k] = (image, tuple(full_hw))
        image, full_hw = self._decoded[k]
        if gray:
            if k not in self._gray:
                self._gray[k] = to_gray3(image)
            image = self._gray[k]
        return image, k, full_hw
