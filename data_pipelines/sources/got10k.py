"""GOT-10k reader (layout ``<root>/train/<seq>/00000001.jpg``, ``groundtruth.txt``, ``absence.label``,
``cover.label``; ``<root>/train/list.txt`` gives the sequence order).

Visibility (spec 6): absence == 0 and cover > 0 and w > 0 and h > 0.

Splits (``split`` argument):
  * ``"train_full"``: every training sequence, in the order of ``splits/got10k_train_split.txt``
    (indices into the ``list.txt`` order), as the official ``GOT10K_train_full``;
  * ``"vot_train"``: the VOT-excluded subset ``splits/got10k_vot_train_split.txt``;
  * ``"all"``: every sequence of ``list.txt`` (or of the folder, sorted, when it has no list.txt),
    in that order (used for the bundled sample dataset and custom GOT-10k-style data);
  * ``"val"``: every sequence under ``<root>/val``.
"""
from __future__ import annotations

import os

import numpy as np

from data_pipelines.sources.base import (FileSource, SequenceInfo, check_length, make_info, read_flag_list,
                                         read_number_table)
from grm_jax.annotations import read_label_file

__all__ = ["Got10kSource", "SPLITS_DIR", "read_index_split"]

SPLITS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "splits")
_SPLIT_FILES = {"train_full": "got10k_train_split.txt", "vot_train": "got10k_vot_train_split.txt"}


def read_index_split(path: str) -> list[int]:
    """Sequence indices of a GOT-10k split file, one integer per line."""
    values = read_label_file(path)
    if not np.all(values == np.round(values)):
        raise ValueError(f"malformed split file {path}: non-integer entries")
    return [int(v) for v in values]


def list_sequence_dirs(base: str) -> list[str]:
    """Sequence folder names from ``list.txt`` (first csv column) or the sorted folder listing."""
    list_file = os.path.join(base, "list.txt")
    if os.path.isfile(list_file):
        with open(list_file, "r", encoding="utf-8") as f:
            names = [ln.strip().split(",")[0] for ln in f if ln.strip()]
        if not names:
            raise ValueError(f"malformed sequence list {list_file}: empty")
        return names
    names = sorted(d for d in os.listdir(base) if os.path.isfile(os.path.join(base, d, "groundtruth.txt")))
    if not names:
        raise FileNotFoundError(f"no sequences (no list.txt and no */groundtruth.txt) under {base}")
    return names


class Got10kSource(FileSource):
    is_video = True

    def __init__(self, root: str, split: str = "train_full", name: str | None = None):
        super().__init__(root)
        if split not in ("train_full", "vot_train", "all", "val"):
            raise ValueError(f"Got10kSource: unknown split {split!r} (train_full, vot_train, all, val)")
        sub = "val" if split == "val" else "train"
        base = os.path.join(self.root, sub)
        if not os.path.isdir(base):
            if split != "val" and os.path.isfile(os.path.join(self.root, "list.txt")):
                base = self.root  # root given as the train folder itself
            else:
                raise FileNotFoundError(f"GOT-10k: missing folder {base}")
        self.base = base
        self.split = split
        self.name = name or f"got10k_{split}"
        all_names = list_sequence_dirs(base)
        if split in _SPLIT_FILES:
            path = os.path.join(SPLITS_DIR, _SPLIT_FILES[split])
            ids = read_index_split(path)
            bad = [i for i in ids if not 0 <= i < len(all_names)]
            if bad:
                raise ValueError(f"GOT-10k split file {path} refers to sequence index {bad[0]} but {base} lists "
                                 f"only {len(all_names)} sequences (use split='all' for partial copies)")
            self._names = [all_names[i] for i in ids]
        else:
            self._names = all_names

    def _sequence_names(self):
        return self._names

    def _seq_dir(self, i: int) -> str:
        return os.path.join(self.base, self._names[i])

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        d = self._seq_dir(i)
        boxes = read_number_table(os.path.join(d, "groundtruth.txt"))
        n = boxes.shape[0]
        absence_path = os.path.join(d, "absence.label")
        cover_path = os.path.join(d, "cover.label")
        absence = check_length(read_flag_list(absence_path), n, absence_path)
        cover = check_length(read_flag_list(cover_path), n, cover_path)
        return make_info(boxes, (absence == 0) & (cover > 0))

    def frame_path(self, i: int, f: int) -> str:
        return os.path.join(self._seq_dir(i), f"{f + 1:08d}.jpg")
