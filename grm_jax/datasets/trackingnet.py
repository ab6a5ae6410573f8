"""TrackingNet layout: the data comes in chunks ``TRAIN_0`` ... ``TRAIN_11`` and ``TEST``.

    <root>/<chunk>/anno/<seq>.txt            x,y,w,h per frame (comma separated)
    <root>/<chunk>/frames/<seq>/0.jpg ...    frames, 0-based, no zero padding

Training (:class:`TrackingNetSource`): every ``TRAIN_k`` chunk present (or the ones asked for),
chunk by chunk, annotation files sorted by name. Only every 30th frame (0, 30, 60, ...) and the
last frame carry a human-made box; a frame may be sampled when it is one of those and its box
has positive size. Frame paths follow from the box count.

Evaluation (:func:`load_trackingnet`): the ``TEST`` chunk (``root`` may be the chunk folder
itself). Only the first box is published (the other rows are NaN); the frames are the .jpg
files in the sequence's frame folder, sorted by number.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from grm_jax.annotations import read_box_file
from grm_jax.datasets.files import list_images, require_dir, select
from grm_jax.datasets.sequence import Sequence, first_box_only
from grm_jax.datasets.source import FileSource, SequenceInfo, make_info
from grm_jax.errors import MissingFileError

__all__ = ["TrackingNetSource", "load_trackingnet", "ANNOTATION_STEP", "NUM_TRAIN_CHUNKS"]

ANNOTATION_STEP = 30
NUM_TRAIN_CHUNKS = 12


def _chunk_sequences(chunk_dir: str) -> list[str]:
    """Sequence names of a chunk (its annotation files, sorted)."""
    anno_dir = require_dir(os.path.join(chunk_dir, "anno"), "TrackingNet anno")
    return sorted(f[:-4] for f in os.listdir(anno_dir) if f.endswith(".txt"))


class TrackingNetSource(FileSource):
    """Training reader; ``chunks``: TRAIN_k ids to use (None = every TRAIN_k folder present)."""

    is_video = True

    def __init__(self, root, chunks: Iterable[int] | None = None, name: str = "trackingnet_train"):
        super().__init__(root, name)
        if chunks is None:
            chunks = [k for k in range(NUM_TRAIN_CHUNKS) if os.path.isdir(os.path.join(self.root, f"TRAIN_{k}"))]
            if not chunks:
                raise MissingFileError(f"TrackingNet: no TRAIN_0..TRAIN_{NUM_TRAIN_CHUNKS - 1} folder under "
                                       f"{self.root}")
        self.chunks = [int(k) for k in chunks]
        self._seqs = [(k, n) for k in self.chunks for n in _chunk_sequences(os.path.join(self.root, f"TRAIN_{k}"))]
        if not self._seqs:
            raise MissingFileError(f"TrackingNet: no annotation files under {self.root}/TRAIN_*/anno")
        self._names = [n for _, n in self._seqs]

    def _sequence_names(self):
        return self._names

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        k, n = self._seqs[i]
        boxes = read_box_file(os.path.join(self.root, f"TRAIN_{k}", "anno", f"{n}.txt"))
        num = boxes.shape[0]
        annotated = (np.arange(num) % ANNOTATION_STEP) == 0
        annotated[num - 1] = True
        return make_info(boxes, annotated)

    def frame_path(self, i: int, f: int) -> str:
        k, n = self._seqs[i]
        return os.path.join(self.root, f"TRAIN_{k}", "frames", n, f"{f}.jpg")


def load_trackingnet(root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Benchmark sequences of the TEST chunk (or the subset ``sequences``)."""
    root = os.fspath(root)
    base = os.path.join(root, "TEST")
    if not os.path.isdir(base) and os.path.isdir(os.path.join(root, "anno")):
        base = root
    anno_dir = require_dir(os.path.join(base, "anno"), "TrackingNet anno")
    frames_dir = require_dir(os.path.join(base, "frames"), "TrackingNet frames")
    out = []
    for name in select(_chunk_sequences(base), sequences, anno_dir):
        sdir = require_dir(os.path.join(frames_dir, name), "sequence")
        frames = [f for f in list_images(sdir, numeric=True) if f.lower().endswith(".jpg")]
        if not frames:
            raise MissingFileError(f"no frames in sequence folder: {sdir}")
        gt = first_box_only(read_box_file(os.path.join(anno_dir, f"{name}.txt"), max_lines=1), len(frames))
        out.append(Sequence(name, frames, gt, "trackingnet"))
    return out
