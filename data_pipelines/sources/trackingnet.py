"""TrackingNet reader: chunks ``<root>/TRAIN_k`` (k = 0..11), ``TRAIN_k/anno/<seq>.txt``
(comma-separated x,y,w,h per frame), frames ``TRAIN_k/frames/<seq>/<i>.jpg`` (0-based).

Visibility (spec 6): w > 0 and h > 0 and the frame is one of the human-annotated ones,
0, 30, 60, ... plus the last frame. Sequences: chunk by chunk, annotation files sorted by name.
"""
from __future__ import annotations

import os

import numpy as np

from data_pipelines.sources.base import FileSource, SequenceInfo, make_info, read_number_table

__all__ = ["TrackingNetSource", "ANNOTATION_STEP"]

ANNOTATION_STEP = 30


class TrackingNetSource(FileSource):
    is_video = True

    def __init__(self, root: str, chunks: list[int] | None = None, name: str = "trackingnet"):
        """chunks: TRAIN_k ids to use; None = every TRAIN_0..TRAIN_11 folder present (at least one)."""
        super().__init__(root)
        self.name = name
        if chunks is None:
            chunks = [k for k in range(12) if os.path.isdir(os.path.join(self.root, f"TRAIN_{k}"))]
            if not chunks:
                raise FileNotFoundError(f"TrackingNet: no TRAIN_0..TRAIN_11 folder under {self.root}")
        self.chunks = [int(k) for k in chunks]
        seqs: list[tuple[int, str]] = []
        for k in self.chunks:
            anno_dir = os.path.join(self.root, f"TRAIN_{k}", "anno")
            if not os.path.isdir(anno_dir):
                raise FileNotFoundError(f"TrackingNet: missing annotation folder {anno_dir}")
            names = sorted(os.path.splitext(f)[0] for f in os.listdir(anno_dir) if f.endswith(".txt"))
            seqs.extend((k, n) for n in names)
        if not seqs:
            raise FileNotFoundError(f"TrackingNet: no annotation files under {self.root}/TRAIN_*/anno")
        self._seqs = seqs
        self._names = [n for _, n in seqs]

    def _sequence_names(self):
        return self._names

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        k, n = self._seqs[i]
        boxes = read_number_table(os.path.join(self.root, f"TRAIN_{k}", "anno", f"{n}.txt"))
        num = boxes.shape[0]
        annotated = (np.arange(num) % ANNOTATION_STEP) == 0
        annotated[num - 1] = True
        return make_info(boxes, annotated)

    def frame_path(self, i: int, f: int) -> str:
        k, n = self._seqs[i]
        return os.path.join(self.root, f"TRAIN_{k}", "frames", n, f"{f}.jpg")
