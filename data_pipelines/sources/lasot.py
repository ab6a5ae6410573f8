"""LaSOT reader: ``<root>/<class>/<class>-<n>/img/%08d.jpg`` (1-based), ``groundtruth.txt``
(comma-separated x,y,w,h), ``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated line).

Training sequences: ``splits/lasot_train_split.txt`` (1120 names). Visibility (spec 6):
not full_occlusion and not out_of_view and w > 0 and h > 0.
"""
from __future__ import annotations

import os

from data_pipelines.sources.base import FileSource, SequenceInfo, check_length, make_info, read_flag_list, \
    read_number_table
from data_pipelines.sources.got10k import SPLITS_DIR

__all__ = ["LasotSource", "read_name_split"]


def read_name_split(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing split file: {path}")
    with open(path, "r", encoding="utf-8") as f:
        names = [ln.strip() for ln in f if ln.strip()]
    if not names:
        raise ValueError(f"malformed split file {path}: empty")
    return names


class LasotSource(FileSource):
    is_video = True

    def __init__(self, root: str, split: str = "train", sequences: list[str] | None = None, name: str = "lasot"):
        """split 'train' reads the official training list; pass ``sequences`` to use your own names."""
        super().__init__(root)
        self.name = name
        if sequences is not None:
            names = list(sequences)
        elif split == "train":
            names = read_name_split(os.path.join(SPLITS_DIR, "lasot_train_split.txt"))
        else:
            raise ValueError(f"LasotSource: unknown split {split!r} (only 'train', or give sequences=)")
        for n in names:
            if "-" not in n:
                raise ValueError(f"LaSOT: bad sequence name {n!r} (expected <class>-<n>)")
        self._names = names

    def _sequence_names(self):
        return self._names

    def _seq_dir(self, i: int) -> str:
        name = self._names[i]
        cls = name.rsplit("-", 1)[0]
        return os.path.join(self.root, cls, name)

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        d = self._seq_dir(i)
        if not os.path.isdir(d):
            raise FileNotFoundError(f"LaSOT: missing sequence folder {d}")
        boxes = read_number_table(os.path.join(d, "groundtruth.txt"))
        n = boxes.shape[0]
        occ_path = os.path.join(d, "full_occlusion.txt")
        oov_path = os.path.join(d, "out_of_view.txt")
        occ = check_length(read_flag_list(occ_path), n, occ_path)
        oov = check_length(read_flag_list(oov_path), n, oov_path)
        return make_info(boxes, (occ == 0) & (oov == 0))

    def frame_path(self, i: int, f: int) -> str:
        return os.path.join(self._seq_dir(i), "img", f"{f + 1:08d}.jpg")
