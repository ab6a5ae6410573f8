"""GOT-10k layout (also the layout of the generated sample dataset).

    <root>/<split>/list.txt                  sequence names, one per line (first comma column)
    <root>/<split>/<seq>/00000001.jpg ...    frames, 1-based, 8 digits
    <root>/<split>/<seq>/groundtruth.txt     x,y,w,h per frame (test split: first frame only)
    <root>/<split>/<seq>/absence.label       1 = target absent, one integer per frame
    <root>/<split>/<seq>/cover.label         visible fraction 0..8, one integer per frame

``split`` is ``train``, ``val`` or ``test``. ``root`` may also be the split folder itself (when
it holds ``list.txt``). Without ``list.txt`` the sequences are the sub-folders holding a
``groundtruth.txt``, sorted by name.

Training (:class:`Got10kSource`): a frame may be sampled when the target is not absent, its cover
is above 0 and its box has positive size. Sequence sets: ``train_full`` = every training sequence
in the order of ``splits/got10k_train_split.txt`` (indices into the ``list.txt`` order),
``vot_train`` = the subset in ``splits/got10k_vot_train_split.txt`` (sequences overlapping VOT
removed), ``all`` = every sequence of ``train/list.txt`` in that order (partial copies, the
sample data), ``val`` = every sequence under ``val``. Frame paths follow from the box count.

Evaluation (:func:`load_got10k`): the frames are the images in the sequence folder, sorted by
frame number; validation needs one ground-truth row per frame, test publishes only the first
(the other rows are NaN). The label files are optional there.
"""
from __future__ import annotations

import os
from typing import Iterable

from grm_jax.annotations import read_box_file, read_flags
from grm_jax.datasets.files import (check_frame_count, check_sequence_name, list_images, read_split_indices,
                                    require_dir, select)
from grm_jax.datasets.sequence import Sequence, first_box_only
from grm_jax.datasets.source import FileSource, SequenceInfo, make_info
from grm_jax.errors import DataError, MissingFileError

__all__ = ["Got10kSource", "load_got10k", "split_dir", "sequence_dirs", "TRAIN_SETS"]

# training sequence sets -> (split folder, shipped index file or None)
TRAIN_SETS = {"train_full": ("train", "got10k_train_split.txt"),
              "vot_train": ("train", "got10k_vot_train_split.txt"),
              "all": ("train", None),
              "val": ("val", None)}


def split_dir(root, split: str) -> str:
    """``<root>/<split>``, or ``root`` itself when it is a split folder (holds list.txt)."""
    root = os.fspath(root)
    base = os.path.join(root, split)
    if os.path.isdir(base):
        return base
    if os.path.isfile(os.path.join(root, "list.txt")):
        return root
    raise MissingFileError(f"missing GOT-10k {split} folder: {base}")


def sequence_dirs(base: str) -> list[str]:
    """Sequence folder names of a split folder: ``list.txt`` order, else sorted folders with a
    groundtruth.txt."""
    list_file = os.path.join(base, "list.txt")
    if os.path.isfile(list_file):
        with open(list_file, "r", encoding="utf-8-sig") as fh:
            rows = [(i, ln.strip().split(",")[0].strip()) for i, ln in enumerate(fh, 1) if ln.strip()]
        names = [check_sequence_name(n, f"{list_file}, line {i}") for i, n in rows]
        if not names:
            raise DataError(f"{list_file}: no sequence names")
        return names
    names = sorted(d for d in os.listdir(base) if os.path.isfile(os.path.join(base, d, "groundtruth.txt")))
    if not names:
        raise MissingFileError(f"no sequences under {base} (no list.txt and no */groundtruth.txt)")
    return names


def _labels(seq_dir: str, num_frames: int, required: bool):
    """(absence, cover) int64 arrays, or None for a label file that is absent and not required."""
    out = []
    for fname in ("absence.label", "cover.label"):
        path = os.path.join(seq_dir, fname)
        out.append(read_flags(path, num_frames) if required or os.path.isfile(path) else None)
    return tuple(out)


class Got10kSource(FileSource):
    """Training reader of a GOT-10k-layout folder; ``split`` is a key of :data:`TRAIN_SETS`."""

    is_video = True

    def __init__(self, root, split: str = "train_full", name: str | None = None):
        if split not in TRAIN_SETS:
            raise ValueError(f"Got10kSource: unknown split {split!r} ({', '.join(TRAIN_SETS)})")
        folder, index_file = TRAIN_SETS[split]
        super().__init__(root, name or f"got10k_{split}")
        self.split = split
        self.base = split_dir(self.root, folder)
        names = sequence_dirs(self.base)
        if index_file is not None:
            ids = read_split_indices(index_file)
            bad = [i for i in ids if i >= len(names)]
            if bad:
                raise DataError(f"GOT-10k split file {index_file} refers to sequence index {bad[0]} but "
                                f"{self.base} lists only {len(names)} sequences",
                                hint="use got10k_train_all for a partial copy of GOT-10k")
            names = [names[i] for i in ids]
        self._names = names

    def _sequence_names(self):
        return self._names

    def _seq_dir(self, i: int) -> str:
        return os.path.join(self.base, self._names[i])

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        d = self._seq_dir(i)
        boxes = read_box_file(os.path.join(d, "groundtruth.txt"))
        absence, cover = _labels(d, boxes.shape[0], required=True)
        return make_info(boxes, (absence == 0) & (cover > 0))

    def frame_path(self, i: int, f: int) -> str:
        return os.path.join(self._seq_dir(i), f"{f + 1:08d}.jpg")


def _load_sequence(base: str, name: str, split: str, dataset: str) -> Sequence:
    sdir = require_dir(os.path.join(base, name), "sequence")
    frames = list_images(sdir, numeric=True)
    if not frames:
        raise MissingFileError(f"no frames in sequence folder: {sdir}")
    gt_path = os.path.join(sdir, "groundtruth.txt")
    if split == "test":
        gt = first_box_only(read_box_file(gt_path, max_lines=1), len(frames))
    else:
        gt = read_box_file(gt_path)
        check_frame_count(gt.shape[0], len(frames), gt_path)
    absence, cover = _labels(sdir, len(frames), required=False)
    return Sequence(name, frames, gt, dataset, cover=cover,
                    absence=None if absence is None else absence.astype(bool))


def load_got10k(root, split: str, sequences: Iterable[str] | None = None,
                dataset: str | None = None) -> list[Sequence]:
    """Benchmark sequences of split 'val' or 'test' (``dataset`` labels them; default got10k_<split>)."""
    if split not in ("val", "test"):
        raise ValueError(f"load_got10k: split must be 'val' or 'test', got {split!r}")
    base = split_dir(root, split)
    names = select(sequence_dirs(base), sequences, base)
    return [_load_sequence(base, n, split, dataset or f"got10k_{split}") for n in names]
