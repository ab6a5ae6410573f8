"""LaSOT layout.

    <root>/<class>/<class>-<k>/img/00000001.jpg ...   frames, 1-based, 8 digits
    <root>/<class>/<class>-<k>/groundtruth.txt        x,y,w,h per frame (comma separated)
    <root>/<class>/<class>-<k>/full_occlusion.txt     one comma-separated line, 1 = fully occluded
    <root>/<class>/<class>-<k>/out_of_view.txt        one comma-separated line, 1 = out of view

The class is the sequence name without its ``-<k>`` suffix. Neither split lists itself on disk:
the training sequences (1120) are in ``splits/lasot_train_split.txt``, the test sequences (280)
in ``tables/lasot_test.json``.

The target is *visible* in a frame that is neither fully occluded nor out of view. Training
(:class:`LasotSource`) samples frames that are visible and have a positive-size box; evaluation
(:func:`load_lasot`) passes the visibility to the analysis and needs exactly one image per
ground-truth row in ``img/``.
"""
from __future__ import annotations

import os
from typing import Iterable

from grm_jax.annotations import read_box_file
from grm_jax.datasets.files import (IMAGE_EXTS, check_frame_count, check_frames_exist, occlusion_visibility,
                                    read_split_names, read_table, require_dir, select)
from grm_jax.datasets.sequence import Sequence
from grm_jax.datasets.source import FileSource, SequenceInfo, make_info
from grm_jax.errors import DataError

__all__ = ["LasotSource", "load_lasot", "sequence_dir", "TRAIN_SPLIT", "TEST_TABLE"]

TRAIN_SPLIT = "lasot_train_split.txt"
TEST_TABLE = "lasot_test.json"


def sequence_dir(root, name: str) -> str:
    """``<root>/<class>/<name>`` (DataError for a name without the ``-<k>`` suffix)."""
    if "-" not in name:
        raise DataError(f"LaSOT: bad sequence name {name!r} (expected <class>-<k>)")
    return os.path.join(os.fspath(root), name.rsplit("-", 1)[0], name)


def _annotations(seq_dir: str):
    """(boxes (N, 4) float64, visible (N,) bool) of one sequence folder."""
    require_dir(seq_dir, "sequence")
    boxes = read_box_file(os.path.join(seq_dir, "groundtruth.txt"))
    visible = occlusion_visibility(os.path.join(seq_dir, "full_occlusion.txt"),
                                   os.path.join(seq_dir, "out_of_view.txt"), boxes.shape[0])
    return boxes, visible


class LasotSource(FileSource):
    """Training reader: the official training split, or the names given in ``sequences``."""

    is_video = True

    def __init__(self, root, sequences: Iterable[str] | None = None, name: str = "lasot_train"):
        super().__init__(root, name)
        names = list(sequences) if sequences is not None else read_split_names(TRAIN_SPLIT)
        for n in names:
            sequence_dir(self.root, n)  # validates the name
        self._names = names

    def _sequence_names(self):
        return self._names

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        boxes, visible = _annotations(sequence_dir(self.root, self._names[i]))
        return make_info(boxes, visible)

    def frame_path(self, i: int, f: int) -> str:
        return os.path.join(sequence_dir(self.root, self._names[i]), "img", f"{f + 1:08d}.jpg")


def load_lasot(root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Benchmark sequences of the LaSOT test split (or the subset ``sequences``)."""
    out = []
    for name in select(read_table(TEST_TABLE), sequences, TEST_TABLE):
        sdir = sequence_dir(root, name)
        gt, visible = _annotations(sdir)
        img_dir = require_dir(os.path.join(sdir, "img"), "frames")
        frames = [os.path.join(img_dir, f"{i:08d}.jpg") for i in range(1, gt.shape[0] + 1)]
        check_frames_exist(frames)
        on_disk = sum(1 for n in os.listdir(img_dir) if n.lower().endswith(IMAGE_EXTS))
        check_frame_count(gt.shape[0], on_disk, os.path.join(sdir, "groundtruth.txt"))
        out.append(Sequence(name, frames, gt, "lasot", visible=visible, object_class=name.rsplit("-", 1)[0]))
    return out
