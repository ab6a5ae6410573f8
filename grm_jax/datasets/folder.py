"""Ground-truth-folder layouts (evaluation only): TNL2K and any plain folder of sequences.

Every sub-folder of ``root`` that holds a ``groundtruth.txt`` (x,y,w,h per frame, any
separator) is a sequence, named after the folder and taken in name order. Its frames are the
.jpg / .jpeg / .png files, sorted by file name, in

* ``folder``: ``<root>/<seq>/img/`` when that folder exists, else ``<root>/<seq>/`` itself;
* ``tnl2k``: ``<root>/<seq>/imgs/``.

There must be exactly one ground-truth row per frame.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

from grm_jax.annotations import read_box_file
from grm_jax.datasets.files import check_frame_count, list_images, require_dir, select
from grm_jax.datasets.sequence import Sequence
from grm_jax.errors import MissingFileError

__all__ = ["load_folder", "load_tnl2k"]


def _load(root, sequences, dataset: str, frame_dir: Callable[[str], str]) -> list[Sequence]:
    root = require_dir(root, f"{dataset} root")
    names = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "groundtruth.txt")))
    if sequences is None and not names:
        raise MissingFileError(f"no sequence folders (with groundtruth.txt) in {root}")
    out = []
    for name in select(names, sequences, root):
        sdir = os.path.join(root, name)
        frames = list_images(frame_dir(sdir))
        gt_path = os.path.join(sdir, "groundtruth.txt")
        gt = read_box_file(gt_path)
        check_frame_count(gt.shape[0], len(frames), gt_path)
        out.append(Sequence(name, frames, gt, dataset))
    return out


def load_folder(root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Sequences of a plain folder (see module doc)."""
    def frame_dir(sdir):
        img = os.path.join(sdir, "img")
        return img if os.path.isdir(img) else sdir

    return _load(root, sequences, "folder", frame_dir)


def load_tnl2k(root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Sequences of TNL2K (see module doc)."""
    return _load(root, sequences, "tnl2k", lambda sdir: require_dir(os.path.join(sdir, "imgs"), "frames"))
