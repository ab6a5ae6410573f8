"""The generator of the sample dataset: a small synthetic tracking dataset in GOT-10k layout,
made by our own code (its reader is :mod:`grm_jax.datasets.sample`).

``ensure_sample_dataset(path)`` writes (once) ``<path>/train`` (8 sequences) and ``<path>/val``
(3 sequences) of 30-40 frames of 160x120 JPEGs: a textured rectangle moving and changing size on
a textured background. Some frames are absent (object not drawn, ``absence.label`` 1, cover 0),
partly covered by a grey bar (cover 1..7) or fully covered (cover 0). Everything derives from
``seed``; the files are byte-identical across runs with the same OpenCV/libjpeg.

The dataset is written into a temporary folder and renamed into place, so concurrent callers
(test workers, grain processes) never see a half-written tree.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import cv2
import numpy as np

__all__ = ["ensure_sample_dataset", "SAMPLE_VERSION", "DEFAULT_SEED"]

SAMPLE_VERSION = "grm-jax-sample-v2"
DEFAULT_SEED = 20230601
DEFAULT_TRAIN, DEFAULT_VAL = 8, 3
_MARKER = ".complete"
_W, _H = 160, 120
_PAN = 24        # background margin (pixels) the camera pans over
_QUALITY = 75    # JPEG quality
_SPLITS = (("train", "GOT-10k_Train"), ("val", "GOT-10k_Val"))
_DISTRACTOR_PROB = 0.35  # share of sequences with one distractor (a second textured box)
_VAL_FRAMES = 40  # one length: sequences tracked together finish together (no smaller-batch recompiles)


def _background(rng: np.random.Generator) -> np.ndarray:
    """(H + 2 PAN, W + 2 PAN, 3) uint8: a smooth colour field mixed with stripes, checks, blobs or
    nothing, plus mild noise."""
    h, w = _H + 2 * _PAN, _W + 2 * _PAN
    coarse = rng.random((int(rng.integers(3, 8)), int(rng.integers(4, 10)), 3)).astype(np.float32)
    low = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(4))
    if kind == 0:
        freq = rng.uniform(0.1, 0.5, size=2)
        pattern = 0.5 + 0.5 * np.sin(freq[0] * xx + freq[1] * yy)
    elif kind == 1:
        cell = int(rng.integers(6, 20))
        pattern = ((yy // cell + xx // cell) % 2).astype(np.float32)
    elif kind == 2:
        blobs = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), float(rng.uniform(2, 5)))
        pattern = (blobs - blobs.min()) / max(float(np.ptp(blobs)), 1e-6)
    else:
        pattern = np.full((h, w), 0.5, np.float32)
    mix = rng.uniform(0.15, 0.4)
    noise = 0.01 * rng.standard_normal((h, w, 1)).astype(np.float32)
    return np.clip(((1 - mix) * low + mix * pattern[..., None] + noise) * 255.0, 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 object appearance: two random colours in a checker, stripe, diagonal,
    frame or disc pattern."""
    c1, c2 = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
    yy, xx = np.mgrid[0:size, 0:size]
    kind = int(rng.integers(5))
    cell = int(rng.integers(4, 12))
    if kind == 0:
        mask = (yy // cell + xx // cell) % 2
    elif kind == 1:
        mask = (yy // cell) % 2 if rng.random() < 0.5 else (xx // cell) % 2
    elif kind == 2:
        mask = ((xx + yy) // (cell + 2)) % 2
    elif kind == 3:
        mask = np.minimum(np.minimum(yy, size - 1 - yy), np.minimum(xx, size - 1 - xx)) < cell + 4
    else:
        radius = rng.uniform(0.2, 0.4) * size
        mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius ** 2
    return np.where(mask[..., None].astype(bool), c1, c2).astype(np.uint8)


def _fold(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflects ``x`` into [lo, hi] (a triangle wave): objects bounce off the image borders."""
    span = hi - lo
    t = np.mod(x - lo, 2 * span)
    return lo + np.where(t > span, 2 * span - t, t)


def _trajectory(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4) float64 boxes (x1, y1, w, h) in pixels: drift plus sway, bouncing off the borders,
    with smooth size and aspect changes."""
    f = np.arange(n, dtype=np.float64)
    base_w, base_h = rng.uniform(18, 44), rng.uniform(15, 40)
    scale = 1.0 + rng.uniform(0.1, 0.35) * np.sin(rng.uniform(0.05, 0.15) * f + rng.uniform(0, 2 * np.pi))
    aspect = 1.0 + rng.uniform(0.0, 0.15) * np.sin(rng.uniform(0.05, 0.2) * f + rng.uniform(0, 2 * np.pi))
    w, h = base_w * scale * aspect, base_h * scale / aspect
    speed, angle = rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
    amp, omega, phase = rng.uniform(3, 20, size=2), rng.uniform(0.08, 0.25, size=2), rng.uniform(0, 2 * np.pi, size=2)
    cx = rng.uniform(40, _W - 40) + speed * np.cos(angle) * f + amp[0] * np.sin(omega[0] * f + phase[0])
    cy = rng.uniform(35, _H - 35) + speed * np.sin(angle) * f + amp[1] * np.sin(omega[1] * f + phase[1])
    cx = _fold(cx, w.max() / 2 + 2, _W - w.max() / 2 - 2)
    cy = _fold(cy, h.max() / 2 + 2, _H - h.max() / 2 - 2)
    return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)


def _paste(img: np.ndarray, texture: np.ndarray, box) -> tuple[int, int, int, int]:
    """Draws ``texture`` resized to the rounded ``box`` (x1, y1, w, h); returns its pixel corners."""
    x1, y1, w, h = box
    xi1, yi1, xi2, yi2 = int(round(x1)), int(round(y1)), int(round(x1 + w)), int(round(y1 + h))
    patch = cv2.resize(texture, (max(xi2 - xi1, 1), max(yi2 - yi1, 1)), interpolation=cv2.INTER_NEAREST)
    ya, yb, xa, xb = max(yi1, 0), min(yi2, img.shape[0]), max(xi1, 0), min(xi2, img.shape[1])
    if ya < yb and xa < xb:
        img[ya:yb, xa:xb] = patch[ya - yi1:yb - yi1, xa - xi1:xb - xi1]
    return xi1, yi1, xi2, yi2


def _visibility_events(rng: np.random.Generator, n: int, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """(absence, cover) labels: kind 0 a short absence, 1 partial covers then a full cover,
    2 an absent frame then partial covers."""
    absence = np.zeros(n, dtype=np.int64)
    cover = np.full(n, 8, dtype=np.int64)
    start = int(rng.integers(5, n - 8))
    if kind == 0:
        absence[start:start + 3] = 1
        cover[start:start + 3] = 0
    elif kind == 1:
        cover[start:start + 3] = [5, 2, 0]
    else:
        absence[start] = 1
        cover[start] = 0
        cover[start + 1:start + 3] = [3, 6]
    return absence, cover


def _write_lines(path: str, lines) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _make_sequence(rng: np.random.Generator, seq_dir: str, kind: int, num_frames: int | None = None) -> None:
    """One sequence of ``num_frames`` (default: 30-40) frames: the target (a textured box) and 0-2
    distractors of the same kind move over a panning background; the target is drawn last, and is
    sometimes absent or covered by a grey bar (labels as GOT-10k: absence.label, cover.label 0..8)."""
    n = int(rng.integers(30, 41))
    n = n if num_frames is None else int(num_frames)
    background = _background(rng)
    boxes, texture = _trajectory(rng, n), _texture(rng)
    distractors = [(_texture(rng), _trajectory(rng, n)) for _ in range(int(rng.random() < _DISTRACTOR_PROB))]
    pan = np.clip(np.cumsum(rng.normal(0, 0.6, size=(n, 2)), axis=0) + _PAN, 0, 2 * _PAN).round().astype(int)
    absence, cover = _visibility_events(rng, n, kind)
    flicker = rng.integers(-6, 7, size=n)
    for f in range(n):
        img = background[pan[f, 1]:pan[f, 1] + _H, pan[f, 0]:pan[f, 0] + _W].copy()
        for tex, track in distractors:
            _paste(img, tex, track[f])
        if absence[f] == 0:
            xi1, yi1, xi2, yi2 = _paste(img, texture, boxes[f])
            if cover[f] < 8:  # grey occluder over the left part of the object
                ox2 = xi1 + int(round((1.0 - cover[f] / 8.0) * (xi2 - xi1))) + (2 if cover[f] == 0 else 0)
                img[max(yi1 - 2, 0):min(yi2 + 2, _H), max(xi1 - 2, 0):max(min(ox2, _W), 0)] = 128
        img = np.clip(img.astype(np.int16) + int(flicker[f]), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _QUALITY])
        if not ok:
            raise RuntimeError("cv2.imencode failed while writing the sample dataset")
        with open(os.path.join(seq_dir, f"{f + 1:08d}.jpg"), "wb") as fh:
            fh.write(buf.tobytes())
    _write_lines(os.path.join(seq_dir, "groundtruth.txt"), (f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}" for x, y, w, h in boxes))
    _write_lines(os.path.join(seq_dir, "absence.label"), (str(int(v)) for v in absence))
    _write_lines(os.path.join(seq_dir, "cover.label"), (str(int(v)) for v in cover))


def _marker_text(seed: int, num_train: int, num_val: int) -> str:
    return f"{SAMPLE_VERSION} seed={seed} train={num_train} val={num_val}\n"


def _existing(path: str, seed: int, num_train: int | None, num_val: int | None) -> bool:
    """True when ``path`` holds a complete dataset this call accepts. A dataset of an older
    generator version (its marker proves we wrote it) is moved aside and deleted (False).
    FileExistsError for one of this version made with other parameters."""
    marker = os.path.join(path, _MARKER)
    if not os.path.isfile(marker):
        return False
    with open(marker, "r", encoding="utf-8") as fh:
        found = fh.read()
    version, _, params = found.strip().partition(" ")
    if version != SAMPLE_VERSION and version.startswith("grm-jax-sample-"):
        trash = tempfile.mkdtemp(prefix=os.path.basename(path) + ".old-", dir=os.path.dirname(path))
        try:
            os.rename(path, os.path.join(trash, "data"))
        except OSError:  # another process moved it first
            pass
        shutil.rmtree(trash, ignore_errors=True)
        return False
    fields = dict(item.partition("=")[::2] for item in params.split())
    wanted = {"seed": seed, "train": num_train, "val": num_val}
    if version == SAMPLE_VERSION and all(v is None or fields.get(k) == str(v) for k, v in wanted.items()):
        return True
    raise FileExistsError(f"{path} holds a sample dataset made with other parameters ({found.strip()!r} in "
                          f"{marker}); delete it or use another folder")


def ensure_sample_dataset(path: str | os.PathLike, seed: int = DEFAULT_SEED, num_train: int | None = None,
                          num_val: int | None = None) -> str:
    """Create the sample dataset at ``path`` unless it is already there; returns ``path`` (str).

    ``num_train`` / ``num_val``: sequences per split; None accepts an existing dataset of any size
    (the readers' call) and generates ``DEFAULT_TRAIN`` / ``DEFAULT_VAL`` when there is none.
    Sequence k of a split depends only on (seed, split, k), so a larger dataset extends a smaller
    one. Idempotent and safe with concurrent callers. A dataset written by an older generator
    version is replaced. Raises FileExistsError if ``path`` is a non-empty folder that is not a
    complete sample dataset with the requested parameters.
    """
    path = os.path.abspath(os.fspath(path))
    if _existing(path, seed, num_train, num_val):
        return path
    num_train = DEFAULT_TRAIN if num_train is None else int(num_train)
    num_val = DEFAULT_VAL if num_val is None else int(num_val)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp-", dir=parent)
    try:
        for split_index, ((split, prefix), count) in enumerate(zip(_SPLITS, (num_train, num_val))):
            split_dir = os.path.join(tmp, split)
            os.makedirs(split_dir)
            names = [f"{prefix}_{k + 1:06d}" for k in range(count)]
            for k, name in enumerate(names):
                os.makedirs(os.path.join(split_dir, name))
                _make_sequence(np.random.default_rng([seed, split_index, k]), os.path.join(split_dir, name),
                               kind=k % 3, num_frames=_VAL_FRAMES if split == "val" else None)
            _write_lines(os.path.join(split_dir, "list.txt"), names)
        with open(os.path.join(tmp, _MARKER), "w", encoding="utf-8") as fh:
            fh.write(_marker_text(seed, num_train, num_val))
        try:
            os.rename(tmp, path)  # atomic; also replaces an empty folder
        except OSError:
            if os.path.isfile(os.path.join(path, _MARKER)):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return ensure_sample_dataset(path, seed, num_train, num_val)
            raise FileExistsError(f"cannot create the sample dataset: {path} exists and is not empty") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
