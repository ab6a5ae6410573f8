"""Tracker result files and benchmark submission archives.

Per-sequence files (pytracking layout, one results folder per tracker/benchmark):
* ``<seq>.txt``: one box per frame, ``x1<TAB>y1<TAB>w<TAB>h``. Default format ``'int'`` writes
  ``%d`` of the values truncated toward zero, exactly like the official GRM/pytracking tracker
  (the paper's numbers were computed from such files); ``'float'`` writes ``%.4f``.
* ``<seq>_time.txt``: per-frame seconds, one per line (``%f``).
Both are written atomically (``grm_jax.io_utils.atomic_write_bytes``: temporary file in the same
folder, then ``os.replace``; mode 0o666 less the umask); the time
file is written first, so an existing ``<seq>.txt`` means the sequence is complete.

Submissions:
* GOT-10k: ``<seq>/<seq>_001.txt`` (comma-separated boxes) and ``<seq>/<seq>_time.txt``, zipped.
* TrackingNet: ``<seq>.txt`` (comma-separated boxes) at the zip root.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from grm_jax.annotations import read_box_file, read_label_file
from grm_jax.errors import DataError, MissingFileError
from grm_jax.io_utils import atomic_write_bytes, path_inside

__all__ = [
    "format_boxes",
    "write_results",
    "is_complete",
    "read_results",
    "read_times",
    "write_got10k_submission",
    "write_trackingnet_submission",
    "SEQUENCE_FILE_SUFFIXES",
    "write_bad_frames",
    "read_bad_frames",
]

# Files an evaluation writes per sequence: boxes, times, unreadable frames (only when there were any).
BAD_FRAMES_SUFFIX = "_bad_frames.json"
SEQUENCE_FILE_SUFFIXES = (".txt", "_time.txt", BAD_FRAMES_SUFFIX)

_FORMATS = ("int", "float")


def format_boxes(boxes_xywh, fmt: str = "int", delimiter: str = "\t") -> str:
    """(N, 4) boxes -> text, one line per box. fmt 'int' = truncation toward zero ('%d'), 'float' = '%.4f'."""
    if fmt not in _FORMATS:
        raise ValueError(f"fmt must be one of {_FORMATS}, got {fmt!r}")
    b = np.asarray(boxes_xywh, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    if not np.all(np.isfinite(b)):
        bad = int(np.argwhere(~np.isfinite(b))[0, 0])
        raise DataError(f"non-finite box at frame {bad}: {b[bad].tolist()}")
    if fmt == "int":
        rows = b.astype(np.int64)  # truncation toward zero, like numpy astype(int) in pytracking
        return "".join(delimiter.join(str(int(v)) for v in r) + "\n" for r in rows)
    return "".join(delimiter.join(f"{v:.4f}" for v in r) + "\n" for r in b)


def _format_times(times) -> str:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    return "".join(f"{v:f}\n" for v in t)


def write_results(results_dir, seq_name: str, boxes_xywh, times=None, fmt: str = "int") -> Path:
    """Write ``<results_dir>/<seq_name>.txt`` (and ``<seq_name>_time.txt`` when times are given).

    boxes_xywh: (N, 4) (x1, y1, w, h) pixels; times: (N,) seconds per frame or None.
    Returns the path of the box file. Atomic: readers never see a half-written file.
    """
    results_dir = Path(results_dir)
    text = format_boxes(boxes_xywh, fmt=fmt, delimiter="\t")
    if times is not None:
        n_t = np.asarray(times).reshape(-1).shape[0]
        n_b = np.asarray(boxes_xywh).shape[0]
        if n_t != n_b:
            raise DataError(f"sequence {seq_name!r}: {n_b} boxes but {n_t} times")
        atomic_write_bytes(path_inside(results_dir, f"{seq_name}_time.txt"), _format_times(times).encode())
    path = path_inside(results_dir, f"{seq_name}.txt")
    atomic_write_bytes(path, text.encode())
    return path


def is_complete(results_dir, seq_name: str, num_frames: int | None = None, require_time: bool = False) -> bool:
    """True when ``<seq_name>.txt`` exists (with ``num_frames`` boxes, if given) and, if
    ``require_time``, ``<seq_name>_time.txt`` too. Unreadable files count as incomplete."""
    results_dir = Path(results_dir)
    path = results_dir / f"{seq_name}.txt"
    if not path.is_file():
        return False
    if require_time and not (results_dir / f"{seq_name}_time.txt").is_file():
        return False
    if num_frames is not None:
        try:
            return read_results(path).shape[0] == int(num_frames)
        except ValueError:
            return False
    return True


def read_results(path) -> np.ndarray:
    """Read a result/box file (comma, tab or space separated) -> (N, 4) float64.
    DataError naming the file and line for a malformed row or an infinite coordinate."""
    return read_box_file(path)


def read_times(path, num_boxes: int | None = None, box_path=None) -> np.ndarray:
    """Read a ``<seq>_time.txt`` file -> (N,) float64 seconds. With ``num_boxes`` (the row count
    of the box file ``box_path``), DataError naming both counts when N differs."""
    times = read_label_file(path)
    if num_boxes is not None and times.shape[0] != num_boxes:
        raise DataError(f"{path}: {times.shape[0]} times but {num_boxes} boxes in {box_path or 'the box file'}")
    return times


def _zip_atomic(zip_path: Path, members: Iterable[tuple[str, bytes]]) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in members:
            zf.writestr(arcname, data)
    atomic_write_bytes(zip_path, buf.getvalue())
    return zip_path


def write_got10k_submission(results_dir, seq_names: Iterable[str], out_dir, zip_path=None, fmt: str = "int") -> Path:
    """Build the GOT-10k test submission from ``<results_dir>/<seq>.txt`` (+ ``<seq>_time.txt``).

    Writes ``<out_dir>/<seq>/<seq>_001.txt`` (comma-separated boxes) and ``<out_dir>/<seq>/<seq>_time.txt``
    (per-frame seconds; a missing time file raises). When ``zip_path`` is given, also writes
    a zip with the same ``<seq>/...`` layout and returns its path; otherwise returns ``out_dir``.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    members = []
    for seq in seq_names:
        box_path = results_dir / f"{seq}.txt"
        time_path = results_dir / f"{seq}_time.txt"
        if not box_path.is_file():
            raise MissingFileError(f"missing result file: {box_path}")
        if not time_path.is_file():
            raise MissingFileError(f"missing time file: {time_path}")
        boxes = read_results(box_path)
        times = read_times(time_path, boxes.shape[0], box_path)
        box_txt = format_boxes(boxes, fmt=fmt, delimiter=",").encode()
        time_txt = _format_times(times).encode()
        atomic_write_bytes(path_inside(out_dir, seq, f"{seq}_001.txt"), box_txt)
        atomic_write_bytes(path_inside(out_dir, seq, f"{seq}_time.txt"), time_txt)
        members += [(f"{seq}/{seq}_001.txt", box_txt), (f"{seq}/{seq}_time.txt", time_txt)]
    if zip_path is not None:
        return _zip_atomic(Path(zip_path), members)
    return out_dir


def write_trackingnet_submission(results_dir, seq_names: Iterable[str], zip_path, fmt: str = "int") -> Path:
    """Zip ``<seq>.txt`` files (comma-separated boxes, one per frame) at the archive root."""
    results_dir = Path(results_dir)
    members = []
    for seq in seq_names:
        box_path = results_dir / f"{seq}.txt"
        if not box_path.is_file():
            raise MissingFileError(f"missing result file: {box_path}")
        members.append((f"{seq}.txt", format_boxes(read_results(box_path), fmt=fmt, delimiter=",").encode()))
    return _zip_atomic(Path(zip_path), members)


def write_bad_frames(results_dir, seq_name: str, bad_frames) -> Path:
    """Writes ``<seq_name>_bad_frames.json``: the unreadable frames whose box was carried over
    (``bad_frames``: (0-based frame index, error message) pairs). Written before ``<seq>.txt``;
    no bad frames removes a file left by an earlier, unfinished attempt."""
    rows = [{"frame": int(i), "error": str(msg)} for i, msg in bad_frames]
    path = path_inside(results_dir, f"{seq_name}{BAD_FRAMES_SUFFIX}")
    if not rows:
        path.unlink(missing_ok=True)
        return path
    atomic_write_bytes(path, (json.dumps({"sequence": seq_name, "bad_frames": rows}, indent=1) + "\n").encode())
    return path


def read_bad_frames(results_dir, seq_name: str) -> list[dict]:
    """The rows written by :func:`write_bad_frames` ([] when the sequence had none)."""
    path = Path(results_dir) / f"{seq_name}{BAD_FRAMES_SUFFIX}"
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["bad_frames"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a bad-frames file ({err})") from None
