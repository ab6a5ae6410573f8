"""Benchmark readers: official dataset layouts -> a list of :class:`Sequence` records.

Layouts (``root`` = the dataset folder as distributed; pytracking/OSTrack expect the same):

* ``got10k_val`` / ``got10k_test``: ``root/{val,test}/list.txt`` and ``root/<split>/<seq>/00000001.jpg ...``,
  ``groundtruth.txt`` (test: first line only), optional ``absence.label`` and ``cover.label``
  (one value per line). ``root`` may also be the split folder itself.
* ``lasot``: test split (names in ``tables/lasot_test.json``); ``root/<class>/<class>-<n>/img/00000001.jpg``,
  ``groundtruth.txt``, ``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated line).
* ``trackingnet``: ``root/TEST/anno/<seq>.txt`` (first line only used) and ``root/TEST/frames/<seq>/0.jpg, 1.jpg ...``.
* ``uav123``, ``nfs`` (NfS 30 fps), ``otb100``: tables ``tables/<name>.json`` (pytracking's sequence
  info: ``path`` and ``anno_path`` relative to root, frames ``startFrame..endFrame`` zero-padded to
  ``nz`` digits with extension ``ext``, optional ``initOmit`` = number of leading frames skipped).
* ``avist``: names in ``tables/avist.json``; ``root/anno/<seq>.txt``,
  ``root/full_occlusion/<seq>_full_occlusion.txt``, ``root/out_of_view/<seq>_out_of_view.txt``,
  frames ``root/sequences/<seq>/img_00001.jpg ...``.
* ``tnl2k``: ``root/<seq>/imgs/*.jpg|png`` (sorted by name) and ``root/<seq>/groundtruth.txt``.
* ``folder``: ``root/<seq>/00001.jpg ...`` (or ``root/<seq>/img/...``; jpg/jpeg/png sorted by name)
  and ``root/<seq>/groundtruth.txt``; every sub-folder holding a groundtruth.txt is a sequence.

Ground truth is (N, 4) float64 (x1, y1, w, h) pixels, one row per frame; rows that the benchmark
does not publish (GOT-10k test, TrackingNet: all but the first) are NaN. Text files may be
separated by commas, tabs or spaces. Every problem raises ``ValueError`` naming the path.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from grm_jax.annotations import read_box_file, read_label_file

__all__ = [
    "Sequence",
    "list_benchmarks",
    "load_benchmark",
    "default_threshold",
    "read_box_file",
    "read_label_file",
    "sequence_names",
    "TABLES_DIR",
]

TABLES_DIR = Path(__file__).resolve().parent / "tables"
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")

# Per-benchmark token-division threshold of the official test configs (spec 2.1, ViT-B 256).
_THRESHOLDS = {"lasot": 0.4, "nfs": 0.6, "uav123": 0.55, "avist": 0.4}


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One benchmark sequence.

    name: sequence name (result files are ``<name>.txt``).
    frames: list of N image paths (str), in temporal order.
    ground_truth: (N, 4) float64 (x1, y1, w, h) pixels; NaN rows where unknown.
    dataset: benchmark name (e.g. 'lasot'); decides metric conventions.
    visible: optional (N,) bool target visibility used by the pytracking analysis (LaSOT, AVisT).
    cover: optional (N,) int GOT-10k cover label (0 = target fully occluded/absent).
    absence: optional (N,) bool GOT-10k absence label (not used by pytracking's analysis).
    object_class: optional class name from the benchmark tables.
    """

    name: str
    frames: list
    ground_truth: np.ndarray
    dataset: str
    visible: np.ndarray | None = None
    cover: np.ndarray | None = None
    absence: np.ndarray | None = None
    object_class: str | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def init_box(self) -> np.ndarray:
        """(4,) float64 first-frame box (x1, y1, w, h)."""
        return self.ground_truth[0]


# ----------------------------------------------------------------------------------------------
# Text files
# ----------------------------------------------------------------------------------------------

def _json_table(name: str):
    path = TABLES_DIR / name
    if not path.is_file():
        raise ValueError(f"benchmark table missing: {path}")
    with open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"missing {what} folder: {path}")
    return path


def _check_frames_exist(frames: list[str]) -> None:
    """Raise naming the first missing frame (one directory listing per folder, not one stat per frame)."""
    listings: dict[str, set] = {}
    for f in frames:
        d, base = os.path.split(f)
        if d not in listings:
            listings[d] = set(os.listdir(d)) if os.path.isdir(d) else set()
        if base not in listings[d]:
            raise ValueError(f"missing frame file: {f}")


def _check_count(gt: np.ndarray, frames: list, path: Path) -> None:
    if gt.shape[0] != len(frames):
        raise ValueError(f"{path}: {gt.shape[0]} ground-truth lines but {len(frames)} frames")


def _sorted_images(folder: Path, numeric: bool = False) -> list[str]:
    names = [n for n in os.listdir(folder) if n.lower().endswith(_IMAGE_EXTS)]
    if numeric:
        def key(n):
            stem = os.path.splitext(n)[0]
            digits = re.sub(r"\D", "", stem)
            return (int(digits) if digits else -1, n)

        names.sort(key=key)
    else:
        names.sort()
    return [str(folder / n) for n in names]


def _first_line_only(gt_first: np.ndarray, n: int) -> np.ndarray:
    gt = np.full((n, 4), np.nan, dtype=np.float64)
    gt[0] = gt_first[0]
    return gt


def _select(names: list[str], wanted: Iterable[str] | None, where: str) -> list[str]:
    if wanted is None:
        return names
    wanted = list(wanted)
    known = set(names)
    for w in wanted:
        if w not in known:
            raise ValueError(f"unknown sequence {w!r} in {where}")
    return wanted


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------

def _got10k(split: str) -> Callable:
    def load(root: Path, sequences):
        base = root / split
        if not base.is_dir() and (root / "list.txt").is_file():
            base = root  # root is the split folder itself
        _require_dir(base, f"GOT-10k {split}")
        list_file = base / "list.txt"
        if list_file.is_file():
            names = [s.strip() for s in list_file.read_text(encoding="utf-8").splitlines() if s.strip()]
        else:
            names = sorted(d.name for d in base.iterdir() if d.is_dir())
        out = []
        for name in _select(names, sequences, str(base)):
            sdir = _require_dir(base / name, "sequence")
            frames = _sorted_images(sdir, numeric=True)
            if not frames:
                raise ValueError(f"no frames in sequence folder: {sdir}")
            gt_path = sdir / "groundtruth.txt"
            if split == "test":
                gt = _first_line_only(read_box_file(gt_path, max_lines=1), len(frames))
            else:
                gt = read_box_file(gt_path)
                _check_count(gt, frames, gt_path)
            cover = absence = None
            if (sdir / "cover.label").is_file():
                cover = read_label_file(sdir / "cover.label").astype(np.int64)
                if cover.shape[0] != len(frames):
                    raise ValueError(f"{sdir / 'cover.label'}: {cover.shape[0]} labels but {len(frames)} frames")
            if (sdir / "absence.label").is_file():
                absence = read_label_file(sdir / "absence.label").astype(bool)
                if absence.shape[0] != len(frames):
                    raise ValueError(f"{sdir / 'absence.label'}: {absence.shape[0]} labels but {len(frames)} frames")
            out.append(Sequence(name, frames, gt, f"got10k_{split}", cover=cover, absence=absence))
        return out

    return load


def _visibility(occ_path: Path, oov_path: Path, n: int) -> np.ndarray:
    occ = read_label_file(occ_path)
    oov = read_label_file(oov_path)
    for p, a in ((occ_path, occ), (oov_path, oov)):
        if a.shape[0] != n:
            raise ValueError(f"{p}: {a.shape[0]} labels but {n} frames")
    return (occ == 0) & (oov == 0)


def _lasot(root: Path, sequences):
    names = _json_table("lasot_test.json")
    out = []
    for name in _select(names, sequences, "lasot_test.json"):
        cls = name.rsplit("-", 1)[0]
        sdir = _require_dir(root / cls / name, "sequence")
        gt_path = sdir / "groundtruth.txt"
        gt = read_box_file(gt_path)
        frames = [str(sdir / "img" / f"{i:08d}.jpg") for i in range(1, gt.shape[0] + 1)]
        _require_dir(sdir / "img", "frames")
        _check_frames_exist(frames)
        extra = [n for n in os.listdir(sdir / "img") if n.lower().endswith(_IMAGE_EXTS)]
        if len(extra) != len(frames):
            raise ValueError(f"{gt_path}: {gt.shape[0]} ground-truth lines but {len(extra)} frames in {sdir / 'img'}")
        vis = _visibility(sdir / "full_occlusion.txt", sdir / "out_of_view.txt", len(frames))
        out.append(Sequence(name, frames, gt, "lasot", visible=vis, object_class=cls))
    return out


def _trackingnet(root: Path, sequences):
    base = root / "TEST"
    if not base.is_dir() and (root / "anno").is_dir():
        base = root
    anno_dir = _require_dir(base / "anno", "TrackingNet anno")
    frames_dir = _require_dir(base / "frames", "TrackingNet frames")
    names = sorted(p[:-4] for p in os.listdir(anno_dir) if p.endswith(".txt"))
    out = []
    for name in _select(names, sequences, str(anno_dir)):
        sdir = _require_dir(frames_dir / name, "sequence")
        frames = [f for f in _sorted_images(sdir, numeric=True) if f.lower().endswith(".jpg")]
        if not frames:
            raise ValueError(f"no frames in sequence folder: {sdir}")
        gt = _first_line_only(read_box_file(anno_dir / f"{name}.txt", max_lines=1), len(frames))
        out.append(Sequence(name, frames, gt, "trackingnet"))
    return out


def _json_benchmark(table: str, dataset: str) -> Callable:
    def load(root: Path, sequences):
        entries = _json_table(table)
        by_name = {e["name"]: e for e in entries}
        out = []
        for name in _select([e["name"] for e in entries], sequences, table):
            e = by_name[name]
            omit = int(e.get("initOmit", 0))
            start, end, nz, ext = int(e["startFrame"]), int(e["endFrame"]), int(e["nz"]), e["ext"]
            fdir = root / e["path"]
            _require_dir(fdir, "sequence")
            frames = [str(fdir / f"{i:0{nz}d}.{ext}") for i in range(start + omit, end + 1)]
            _check_frames_exist(frames)
            gt_path = root / e["anno_path"]
            gt = read_box_file(gt_path)[omit:]
            _check_count(gt, frames, gt_path)
            out.append(Sequence(name, frames, gt, dataset, object_class=e.get("object_class")))
        return out

    return load


def _avist(root: Path, sequences):
    names = _json_table("avist.json")
    out = []
    for name in _select(names, sequences, "avist.json"):
        gt_path = root / "anno" / f"{name}.txt"
        gt = read_box_file(gt_path)
        fdir = _require_dir(root / "sequences" / name, "sequence")
        frames = [str(fdir / f"img_{i:05d}.jpg") for i in range(1, gt.shape[0] + 1)]
        _check_frames_exist(frames)
        vis = _visibility(root / "full_occlusion" / f"{name}_full_occlusion.txt",
                          root / "out_of_view" / f"{name}_out_of_view.txt", len(frames))
        out.append(Sequence(name, frames, gt, "avist", visible=vis))
    return out


def _groundtruth_folders(root: Path, sequences, dataset: str, frame_dir: Callable[[Path], Path]):
    """Sequences laid out as <root>/<seq>/groundtruth.txt with frames in frame_dir(<root>/<seq>)."""
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "groundtruth.txt").is_file())
    if sequences is None and not names:
        raise ValueError(f"no sequence folders (with groundtruth.txt) in {root}")
    out = []
    for name in _select(names, sequences, str(root)):
        sdir = _require_dir(root / name, "sequence")
        frames = _sorted_images(frame_dir(sdir))
        gt_path = sdir / "groundtruth.txt"
        gt = read_box_file(gt_path)
        _check_count(gt, frames, gt_path)
        out.append(Sequence(name, frames, gt, dataset))
    return out


def _tnl2k(root: Path, sequences):
    return _groundtruth_folders(root, sequences, "tnl2k", lambda sdir: _require_dir(sdir / "imgs", "frames"))


def _folder(root: Path, sequences):
    return _groundtruth_folders(root, sequences, "folder",
                                lambda sdir: sdir / "img" if (sdir / "img").is_dir() else sdir)


_LOADERS: dict[str, Callable] = {
    "got10k_val": _got10k("val"),
    "got10k_test": _got10k("test"),
    "lasot": _lasot,
    "trackingnet": _trackingnet,
    "uav123": _json_benchmark("uav123.json", "uav123"),
    "nfs": _json_benchmark("nfs.json", "nfs"),
    "otb100": _json_benchmark("otb100.json", "otb100"),
    "avist": _avist,
    "tnl2k": _tnl2k,
    "folder": _folder,
}


def list_benchmarks() -> list[str]:
    """Names accepted by :func:`load_benchmark`."""
    return sorted(_LOADERS)


def _check_name(name: str) -> str:
    key = str(name).lower()
    if key not in _LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(list_benchmarks())}")
    return key


def load_benchmark(name: str, root, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """Read benchmark ``name`` from its official layout under ``root`` -> list of Sequence.

    sequences: optional subset of sequence names (in that order); unknown names raise.
    Raises ValueError for an unknown benchmark (listing the valid names), a missing root,
    sequence folder or frame file, and ground truth whose line count differs from the frames.
    """
    key = _check_name(name)
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"benchmark {key!r}: root folder does not exist: {root}")
    return _LOADERS[key](root, sequences)


def sequence_names(name: str) -> list[str] | None:
    """Sequence names from the shipped tables (lasot, avist, uav123, nfs, otb100); None for others."""
    key = _check_name(name)
    if key == "lasot":
        return list(_json_table("lasot_test.json"))
    if key == "avist":
        return list(_json_table("avist.json"))
    if key in ("uav123", "nfs", "otb100"):
        return [e["name"] for e in _json_table(f"{key}.json")]
    return None


def default_threshold(name: str) -> float:
    """Token-division threshold of the official test config for a benchmark (spec 2.1).

    lasot 0.4, nfs 0.6, uav123 0.55, avist 0.4; everything else (GOT-10k, TrackingNet, ...) 0.0 (argmax).
    """
    key = str(name).lower()
    aliases = {"uav": "uav123", "nfs30": "nfs", "lasot_test": "lasot"}
    key = aliases.get(key, key)
    return float(_THRESHOLDS.get(key, 0.0))
