"""Video input/output for the track mode: frame readers, an annotated MP4 writer and the
token-division overlay (paper Fig. 3 style).

Frames are (H, W, 3) uint8 RGB everywhere (OpenCV decodes BGR; converted like the official loader).
Input: a video file (anything cv2.VideoCapture reads) or a folder of images sorted by file name.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

__all__ = [
    "FrameError",
    "IMAGE_EXTENSIONS",
    "VideoWriter",
    "division_panel",
    "draw_box",
    "frame_count",
    "iter_frames",
    "list_frame_files",
    "read_image",
    "render_frame",
    "video_fps",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class FrameError(ValueError):
    """A frame source problem (missing file, unreadable image, empty folder); names the path."""


def read_image(path) -> np.ndarray:
    """Read one image file -> (H, W, 3) uint8 RGB (cv2.imread BGR -> RGB)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FrameError(f"missing frame file: {path}")
    im = cv2.imread(path, cv2.IMREAD_COLOR)
    if im is None or im.size == 0:
        raise FrameError(f"cannot read image (corrupt or unsupported format): {path}")
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def list_frame_files(folder) -> list[str]:
    """Image files of a folder, sorted by name; FrameError when none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameError(f"missing frame folder: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise FrameError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder: {folder}")
    return [str(folder / n) for n in names]


def _open_capture(path: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise FrameError(f"cannot open video file: {path}")
    return cap


def iter_frames(source) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames from a video file or a folder of images (sorted by name)."""
    source = os.fspath(source)
    if os.path.isdir(source):
        for f in list_frame_files(source):
            yield read_image(f)
        return
    if not os.path.exists(source):
        raise FrameError(f"missing video file or frame folder: {source}")
    cap = _open_capture(source)
    try:
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if n == 0:
            raise FrameError(f"no frames could be decoded from video file: {source}")
    finally:
        cap.release()


def frame_count(source) -> int | None:
    """Number of frames (folder: exact; video: the container's count, may be None/approximate)."""
    source = os.fspath(source)
    if os.path.isdir(source):
        return len(list_frame_files(source))
    if not os.path.exists(source):
        raise FrameError(f"missing video file or frame folder: {source}")
    cap = _open_capture(source)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return n if n > 0 else None


def video_fps(source, default: float = 30.0) -> float:
    """Frame rate of a video file (``default`` for folders or unknown rates)."""
    source = os.fspath(source)
    if os.path.isdir(source) or not os.path.exists(source):
        return default
    cap = cv2.VideoCapture(source)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if math.isfinite(fps) and fps > 0 else default


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------

BOX_COLOR = (255, 64, 32)       # RGB
GT_COLOR = (32, 220, 64)
SEARCH_COLOR = (255, 215, 0)


def draw_box(image: np.ndarray, box_xywh, color=BOX_COLOR, thickness: int = 2, label: str | None = None) -> np.ndarray:
    """Draws an (x, y, w, h) rectangle in place on an RGB uint8 image; returns the image."""
    x, y, w, h = (float(v) for v in box_xywh)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return image
    p1 = (int(round(x)), int(round(y)))
    p2 = (int(round(x + w)), int(round(y + h)))
    cv2.rectangle(image, p1, p2, color, thickness, lineType=cv2.LINE_AA)
    if label:
        cv2.putText(image, label, (p1[0], max(12, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1,
                    cv2.LINE_AA)
    return image


def division_panel(search_crop: np.ndarray, decisions: np.ndarray, layers: Sequence[int], size: int,
                   shade: float = 0.25) -> np.ndarray:
    """Fig. 3 style panel: the search crop once per chosen dividing layer, tokens in E_S darkened.

    search_crop: (S, S, 3) uint8; decisions: (L, Nx) bool rows for ``layers`` (True = E_A, kept
    bright; False = E_S, multiplied by ``shade``); size: panel side in pixels. Tiles are laid out
    in a near-square grid, each labelled with its 0-based block index.
    """
    n = len(layers)
    panel = np.zeros((size, size, 3), np.uint8)
    if n == 0:
        return panel
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    tile = max(8, min(size // cols, size // rows))
    grid = int(round(math.sqrt(decisions.shape[-1])))
    for k, (layer, dec) in enumerate(zip(layers, decisions)):
        mask = np.asarray(dec, bool).reshape(grid, grid)
        factor = np.where(mask, 1.0, shade).astype(np.float32)
        factor = cv2.resize(factor, (search_crop.shape[1], search_crop.shape[0]), interpolation=cv2.INTER_NEAREST)
        shaded = (search_crop.astype(np.float32) * factor[:, :, None]).astype(np.uint8)
        # grid lines between E_S cells make the token layout visible
        step = search_crop.shape[0] / grid
        for g in range(1, grid):
            c = int(round(g * step))
            shaded[c, :, :] = shaded[c, :, :] // 2
            shaded[:, c, :] = shaded[:, c, :] // 2
        t = cv2.resize(shaded, (tile, tile), interpolation=cv2.INTER_AREA)
        cv2.putText(t, f"L{layer} E_A {mask.mean():.0%}", (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
        r, c = divmod(k, cols)
        panel[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = t
    return panel


def render_frame(frame: np.ndarray, box_xywh, frame_index: int | None = None, search_box_xywh=None,
                 search_crop: np.ndarray | None = None, decisions: np.ndarray | None = None,
                 layers: Sequence[int] = (), search_factor: float = 4.0) -> np.ndarray:
    """Annotated RGB frame: predicted box (and the search region); with ``decisions`` a division
    panel (see :func:`division_panel`) of side = frame height is appended on the right."""
    img = np.ascontiguousarray(frame.copy())
    if search_box_xywh is not None and decisions is not None:
        x, y, w, h = (float(v) for v in search_box_xywh)
        side = math.ceil(math.sqrt(w * h) * search_factor)
        cx, cy = x + w / 2, y + h / 2
        draw_box(img, (cx - side / 2, cy - side / 2, side, side), SEARCH_COLOR, 1)
    draw_box(img, box_xywh, BOX_COLOR, 2)
    if frame_index is not None:
        cv2.putText(img, f"#{frame_index}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(img, f"#{frame_index}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    if decisions is None:
        return img
    h = img.shape[0]
    if search_crop is None:
        panel = np.zeros((h, h, 3), np.uint8)
    else:
        panel = division_panel(search_crop, decisions, layers, h)
    return np.concatenate([img, panel], axis=1)


class VideoWriter:
    """Writes RGB frames to an MP4 file (cv2.VideoWriter, 'mp4v'); the size is fixed by the first frame.

    Use as a context manager or call ``close()``. Frames of a different size are resized.
    """

    def __init__(self, path, fps: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self._writer = None
        self._size = None
        self.frames_written = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        frame = np.asarray(frame_rgb, np.uint8)
        if self._writer is None:
            h, w = frame.shape[:2]
            # mp4v wants even dimensions on some builds
            self._size = (w + (w % 2), h + (h % 2))
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f"cannot open video writer (mp4v) for {self.path}")
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
