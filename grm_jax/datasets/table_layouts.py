"""Benchmarks described by a shipped sequence table: UAV123, NfS (30 fps) and OTB-100.

Their folders do not say which frames and annotation file belong to a sequence, so each is
read through its shipped table (the registry row's ``table``, ``tables/<benchmark>.json``), a list
of records:

    name         sequence name (result files are <name>.txt)
    path         frame folder, relative to the benchmark root
    anno_path    ground-truth file (x,y,w,h per line, any separator), relative to the root
    startFrame   number of the first frame, endFrame number of the last frame (inclusive)
    nz, ext      frame file names are the number zero-padded to nz digits, then .ext
    initOmit     optional: leading frames to skip (their ground-truth rows are dropped too)
    object_class optional class name

A sequence has one frame per number in ``startFrame + initOmit .. endFrame`` and needs exactly
one ground-truth row for each (NaN rows are kept: frames without a box).
"""
from __future__ import annotations

import os
from typing import Iterable

from grm_jax.annotations import read_box_file
from grm_jax.datasets.files import check_frame_count, check_frames_exist, read_table, require_dir, select
from grm_jax.datasets.sequence import Sequence
from grm_jax.errors import DataError

__all__ = ["load_table_benchmark"]


def _load_entry(root: str, e: dict, table: str, benchmark: str) -> Sequence:
    try:
        omit = int(e.get("initOmit", 0))
        start, end, nz, ext = int(e["startFrame"]), int(e["endFrame"]), int(e["nz"]), str(e["ext"])
        frame_dir, anno = os.path.join(root, e["path"]), os.path.join(root, e["anno_path"])
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"tables/{table}: bad record {e.get('name')!r} ({err!r})") from None
    require_dir(frame_dir, "sequence")
    frames = [os.path.join(frame_dir, f"{i:0{nz}d}.{ext}") for i in range(start + omit, end + 1)]
    check_frames_exist(frames)
    gt = read_box_file(anno)[omit:]
    check_frame_count(gt.shape[0], len(frames), anno)
    return Sequence(e["name"], frames, gt, benchmark, object_class=e.get("object_class"))


def load_table_benchmark(table: str, benchmark: str, root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Sequences of ``benchmark`` (uav123 / nfs / otb100; the label of the returned sequences) under
    ``root`` as the shipped table ``tables/<table>`` describes them (or the subset ``sequences``)."""
    entries = read_table(table)
    by_name = {e["name"]: e for e in entries}
    names = select([e["name"] for e in entries], sequences, f"tables/{table}")
    return [_load_entry(os.fspath(root), by_name[n], table, benchmark) for n in names]
