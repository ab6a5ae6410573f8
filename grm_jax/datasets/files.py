"""File-system helpers shared by the dataset readers, and the files shipped with the package.

Shipped files:

* ``tables/<name>.json``: sequence tables of benchmarks whose layout does not list its own
  sequences. ``lasot_test.json`` and ``avist.json`` are lists of sequence names;
  ``uav123.json``, ``nfs.json`` and ``otb100.json`` are lists of records (see
  :mod:`grm_jax.datasets.table_layouts`). A registry row names its table (``DatasetSpec.table``).
* ``splits/<name>.txt``: training subsets. ``got10k_train_split.txt`` and
  ``got10k_vot_train_split.txt`` hold 0-based indices into the order of GOT-10k's
  ``train/list.txt``, one per line; ``lasot_train_split.txt`` holds LaSOT sequence names.

Missing files and folders raise :class:`~grm_jax.errors.MissingFileError`, malformed ones
:class:`~grm_jax.errors.DataError`; both name the path.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterable

import numpy as np

from grm_jax.annotations import read_flags, read_label_file
from grm_jax.errors import DataError, MissingFileError

__all__ = ["TABLES_DIR", "SPLITS_DIR", "IMAGE_EXTS", "MissingSequenceError", "check_sequence_name", "require_dir",
           "list_images", "check_frames_exist",
           "check_frame_count", "read_table", "table_sequence_names", "read_split_names", "read_split_indices", "select",
           "occlusion_visibility"]

_HERE = os.path.dirname(os.path.abspath(__file__))
TABLES_DIR = os.path.join(_HERE, "tables")
SPLITS_DIR = os.path.join(_HERE, "splits")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def check_sequence_name(name, where) -> str:
    """``name`` when it is a plain sequence name; DataError naming ``where`` (the list, table or
    folder it came from) otherwise. A sequence name becomes result file names
    (``<workdir>/<name>.txt``), so it must not be able to point anywhere else: no path separator
    (``/`` or ``\\``), not empty, not ``.`` or ``..``, no NUL or other control character, and it
    must be valid Unicode (a folder name of non-UTF-8 bytes cannot be written into the reports)."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "it is empty"
    elif set(name) <= {"."}:
        problem = "it is a relative folder reference"
    elif "/" in name or "\\" in name:
        problem = "it is a path (absolute paths and folder separators are not allowed)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "it holds a control character (NUL, newline, ...)"
    else:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            problem = "it holds bytes that are not UTF-8"
    if problem is not None:
        raise DataError(f"{os.fspath(where)}: sequence name {ascii(name)} is not a plain name: {problem}",
                        hint="sequence names must be plain file names; rename that sequence (or its folder)")
    return name


class MissingSequenceError(MissingFileError):
    """The folder of a benchmark sequence is not in the dataset root (``require_dir(path, "sequence")``);
    scoring without ``--sequences`` skips such sequences with one warning."""


def require_dir(path, what: str) -> str:
    """``path`` as str if it is a folder, else MissingFileError 'missing <what> folder: <path>'
    (MissingSequenceError when ``what`` is "sequence")."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise (MissingSequenceError if what == "sequence" else MissingFileError)(f"missing {what} folder: {path}")
    return path


def list_images(folder, numeric: bool = False) -> list[str]:
    """Paths of the .jpg/.jpeg/.png files in ``folder``, sorted by name or, with ``numeric``,
    by the number formed by the digits of the file name (``2.jpg`` before ``10.jpg``)."""
    folder = require_dir(folder, "frames")
    names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS)]
    if numeric:
        def key(n):
            digits = re.sub(r"\D", "", os.path.splitext(n)[0])
            return (int(digits) if digits else -1, n)

        names.sort(key=key)
    else:
        names.sort()
    return [os.path.join(folder, n) for n in names]


def check_frames_exist(frames: Iterable[str]) -> None:
    """MissingFileError naming the first absent frame (one listing per folder, not one stat per frame)."""
    listings: dict[str, set] = {}
    for f in frames:
        d, base = os.path.split(f)
        if d not in listings:
            listings[d] = set(os.listdir(d)) if os.path.isdir(d) else set()
        if base not in listings[d]:
            raise MissingFileError(f"missing frame file: {f}")


def check_frame_count(num_boxes: int, num_frames: int, path) -> None:
    """DataError when a ground-truth file does not hold one box per frame."""
    if num_boxes != num_frames:
        raise DataError(f"{os.fspath(path)}: {num_boxes} ground-truth lines but {num_frames} frames")


def read_table(name: str):
    """The parsed shipped table ``tables/<name>``."""
    path = os.path.join(TABLES_DIR, name)
    if not os.path.isfile(path):
        raise MissingFileError(f"shipped sequence table missing: {path} (broken install?)")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None


def table_sequence_names(name: str) -> list[str]:
    """Sequence names of the shipped table ``tables/<name>``: a list of names, or of records with
    a ``name`` field."""
    return [e["name"] if isinstance(e, dict) else str(e) for e in read_table(name)]


def _split_path(name: str) -> str:
    path = os.path.join(SPLITS_DIR, name)
    if not os.path.isfile(path):
        raise MissingFileError(f"shipped split file missing: {path} (broken install?)")
    return path


def read_split_names(name: str) -> list[str]:
    """Sequence names of the shipped split file ``splits/<name>``, one per line."""
    path = _split_path(name)
    with open(path, "r", encoding="utf-8-sig") as fh:
        names = [ln.strip() for ln in fh if ln.strip()]
    if not names:
        raise DataError(f"{path}: no sequence names")
    return names


def read_split_indices(name: str) -> list[int]:
    """0-based sequence indices of the shipped split file ``splits/<name>``, one per line."""
    path = _split_path(name)
    values = read_label_file(path)
    if values.size == 0 or not np.all(values == np.round(values)) or np.any(values < 0):
        raise DataError(f"{path}: expected non-negative integers, one per line")
    return [int(v) for v in values]


def select(names: list[str], wanted: Iterable[str] | None, where: str) -> list[str]:
    """``names``, or the subset ``wanted`` in the order given (DataError for a name not in ``names``)."""
    if wanted is None:
        return [check_sequence_name(n, where) for n in names]
    wanted = [check_sequence_name(w, "--sequences") for w in wanted]
    known = set(names)
    for w in wanted:
        if w not in known:
            raise DataError(f"unknown sequence {w!r} in {where}")
    return wanted


def occlusion_visibility(occlusion_path, out_of_view_path, num_frames: int) -> np.ndarray:
    """(N,) bool: the target is visible when it is neither fully occluded nor out of view
    (LaSOT / AVisT label files, 1 = occluded / out of view)."""
    occ = read_flags(occlusion_path, num_frames)
    oov = read_flags(out_of_view_path, num_frames)
    return (occ == 0) & (oov == 0)
