"""The one parser of annotation and result text files (dataset readers and result scoring).

Number files hold one row per line; numbers are separated by commas, tabs, semicolons or
spaces. Blank lines are skipped, a UTF-8 byte-order mark at the start of the file is ignored,
``nan`` is kept as NaN (a frame without a box) and infinite values are refused.

* Box files: one box per line, 4 numbers ``x, y, w, h`` in pixels (x, y = top-left corner).
* Label files: integers, one per line (GOT-10k ``absence.label`` / ``cover.label``) or all on
  one comma-separated line (LaSOT / AVisT ``full_occlusion.txt`` / ``out_of_view.txt``).

Every problem raises :class:`grm_jax.errors.DataError` naming the file and, for a bad row, its
line number; an absent file raises :class:`MissingAnnotationError` (a ``MissingFileError``).
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from grm_jax.errors import DataError, MissingFileError

__all__ = ["MissingAnnotationError", "read_box_file", "read_label_file", "read_flags"]

_SEPARATORS = re.compile(r"[,\t; ]+")


class MissingAnnotationError(MissingFileError):
    """An annotation file that does not exist (a DataError that is also a FileNotFoundError)."""


def _parse_line(path: str, lineno: int, text: str) -> list[float]:
    try:
        values = [float(tok) for tok in _SEPARATORS.split(text) if tok]
    except ValueError:
        raise DataError(f"{path}, line {lineno}: cannot parse numbers from {text[:80]!r}") from None
    if any(math.isinf(v) for v in values):
        raise DataError(f"{path}, line {lineno}: infinite value in {text[:80]!r}")
    return values


def _numbered_rows(path) -> list[tuple[int, list[float]]]:
    """(line number, numbers) of every non-blank line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingAnnotationError(f"missing file: {path}")
    rows = []
    try:
        with open(path, "r", encoding="utf-8-sig") as fh:  # -sig: drops a leading byte-order mark
            for lineno, line in enumerate(fh, start=1):
                text = line.strip()
                if text:
                    rows.append((lineno, _parse_line(path, lineno, text)))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    return rows


def read_box_file(path, max_lines: int | None = None) -> np.ndarray:
    """(N, 4) float64 boxes (x, y, w, h) pixels, one per non-blank line.

    max_lines: read only the first boxes (GOT-10k / TrackingNet test publish the first only)."""
    rows = _numbered_rows(path)
    if max_lines is not None:
        rows = rows[:max_lines]
    if not rows:
        raise DataError(f"{os.fspath(path)}: no boxes")
    for lineno, row in rows:
        if len(row) != 4:
            raise DataError(f"{os.fspath(path)}, line {lineno}: expected 4 numbers, got {len(row)}")
    return np.asarray([row for _, row in rows], dtype=np.float64).reshape(-1, 4)


def read_label_file(path) -> np.ndarray:
    """Flat (K,) float64 array of every number in the file, in reading order."""
    return np.asarray([v for _, row in _numbered_rows(path) for v in row], dtype=np.float64)


def read_flags(path, num_frames: int | None = None) -> np.ndarray:
    """(N,) int64 per-frame integer labels; DataError if empty, not integers, or (when
    ``num_frames`` is given) not exactly one label per frame."""
    values = read_label_file(path)
    path = os.fspath(path)
    if values.size == 0:
        raise DataError(f"{path}: no labels")
    if not np.all(values == np.round(values)):  # also false for NaN
        raise DataError(f"{path}: labels must be integers")
    if num_frames is not None and values.shape[0] != num_frames:
        raise DataError(f"{path}: {values.shape[0]} labels but {num_frames} frames")
    return values.astype(np.int64)
