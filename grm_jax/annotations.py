"""Annotation text files shared by the benchmark readers and the training-data readers.

Box files: one box per line, 4 numbers separated by commas, tabs, semicolons or spaces
(x, y, w, h in pixels; 'nan' kept as NaN; blank lines skipped). Label files: integers one
per line (GOT-10k absence/cover) or comma-separated on one line (LaSOT occlusion).
"""
from __future__ import annotations

import os
import re

import numpy as np

_SEPARATORS = re.compile(r"[,\t; ]+")


class MissingAnnotationError(FileNotFoundError, ValueError):
    """An annotation file that does not exist (both a FileNotFoundError and a ValueError)."""


def read_number_rows(path) -> list[list[float]]:
    """Rows of numbers from a text file; errors name the file and line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingAnnotationError(f"missing file: {path}")
    rows = []
    with open(path, "r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                rows.append([float(tok) for tok in _SEPARATORS.split(text) if tok])
            except ValueError:
                raise ValueError(f"{path}, line {lineno}: cannot parse numbers from {text[:80]!r}") from None
    return rows


def read_box_file(path, max_lines: int | None = None) -> np.ndarray:
    """(N, 4) float64 boxes; max_lines reads only the first lines (GOT-10k/TrackingNet test)."""
    rows = read_number_rows(path)
    if max_lines is not None:
        rows = rows[:max_lines]
    if not rows:
        raise ValueError(f"{path}: no boxes")
    for i, row in enumerate(rows):
        if len(row) != 4:
            raise ValueError(f"{path}, box {i + 1}: expected 4 numbers, got {len(row)}")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def read_label_file(path) -> np.ndarray:
    """Flat float64 array of per-frame labels."""
    return np.asarray([v for row in read_number_rows(path) for v in row], dtype=np.float64)
