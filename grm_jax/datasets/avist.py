"""AVisT layout (evaluation only); the 120 sequence names are in ``tables/avist.json``.

    <root>/anno/<seq>.txt                                   x,y,w,h per frame
    <root>/full_occlusion/<seq>_full_occlusion.txt          one comma-separated line, 1 = occluded
    <root>/out_of_view/<seq>_out_of_view.txt                one comma-separated line, 1 = out of view
    <root>/sequences/<seq>/img_00001.jpg ...                frames, 1-based, 5 digits

One frame per ground-truth row. As for LaSOT, the target is visible in a frame that is neither
fully occluded nor out of view; the analysis receives that visibility.
"""
from __future__ import annotations

import os
from typing import Iterable

from grm_jax.annotations import read_box_file
from grm_jax.datasets.files import check_frames_exist, occlusion_visibility, read_table, require_dir, select
from grm_jax.datasets.sequence import Sequence

__all__ = ["load_avist", "TABLE"]

TABLE = "avist.json"


def load_avist(root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Benchmark sequences of AVisT under ``root`` (or the subset ``sequences``)."""
    root = os.fspath(root)
    out = []
    for name in select(read_table(TABLE), sequences, TABLE):
        gt = read_box_file(os.path.join(root, "anno", f"{name}.txt"))
        fdir = require_dir(os.path.join(root, "sequences", name), "sequence")
        frames = [os.path.join(fdir, f"img_{i:05d}.jpg") for i in range(1, gt.shape[0] + 1)]
        check_frames_exist(frames)
        visible = occlusion_visibility(os.path.join(root, "full_occlusion", f"{name}_full_occlusion.txt"),
                                       os.path.join(root, "out_of_view", f"{name}_out_of_view.txt"), len(frames))
        out.append(Sequence(name, frames, gt, "avist", visible=visible))
    return out
