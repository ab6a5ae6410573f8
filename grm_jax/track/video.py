"""Video output for the track mode: an annotated video writer that browsers play, box drawing and
the token-division overlay (paper Fig. 3 style). Frame input lives in :mod:`grm_jax.track.frames`
(its names are re-exported here for older imports).

Frames are (H, W, 3) uint8 RGB everywhere.

Codecs (:class:`VideoWriter`): an ``.mp4`` file is written in H.264, which browsers, notebooks'
HTML5 players and every desktop player play. The encoder is OpenCV's ('avc1') where the OpenCV
build has one (the PyPI wheels do not), else the ffmpeg binary shipped by the ``imageio-ffmpeg``
package (libx264). Each is tried once per process by writing a two-frame clip and reading it back.
Without either, MPEG-4 Part 2 ('mp4v', OpenCV) is written with a warning: desktop players (VLC,
ffplay) play it, browsers do not.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


__all__ = [
    "CODECS",
    "VideoWriter",
    "best_codec",
    "division_panel",
    "draw_box",
    "render_frame",
]

# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

# name -> (backend, what the summary says); tried in this order for .mp4 files
CODECS = {
    "avc1": ("opencv", "H.264 (OpenCV)"),
    "libx264": ("ffmpeg", "H.264 (imageio-ffmpeg)"),
    "mp4v": ("opencv", "MPEG-4 Part 2 (OpenCV; not playable in browsers)"),
}
BROWSER_CODECS = ("avc1", "libx264")
_FFMPEG_OPTIONS = ["-preset", "veryfast", "-crf", "20", "-movflags", "+faststart"]


@contextlib.contextmanager
def quiet_stderr():
    """Silences file descriptor 2 (ffmpeg's own messages while a codec is probed)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _OpenCVBackend:
    def __init__(self, path: Path, codec: str, fps: float, size: tuple[int, int]):
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
        if not self._writer.isOpened():
            self._writer.release()
            raise OSError(f"OpenCV cannot open a {codec!r} video writer for {path}")

    def write(self, frame_rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


class _FFmpegBackend:
    def __init__(self, path: Path, codec: str, fps: float, size: tuple[int, int]):
        import imageio_ffmpeg  # noqa: PLC0415  (optional at import time: probed by best_codec)

        self._gen = imageio_ffmpeg.write_frames(str(path), size, fps=fps, codec=codec, quality=None,
                                                macro_block_size=1, ffmpeg_log_level="error",
                                                output_params=_FFMPEG_OPTIONS)
        with warnings.catch_warnings():
            # jax warns at every fork; subprocess execs ffmpeg in the child at once, which is safe
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            self._gen.send(None)  # starts ffmpeg

    def write(self, frame_rgb: np.ndarray) -> None:
        self._gen.send(frame_rgb)

    def close(self) -> None:
        self._gen.close()


_BACKENDS = {"opencv": _OpenCVBackend, "ffmpeg": _FFmpegBackend}


def _open_backend(path: Path, codec: str, fps: float, size: tuple[int, int]):
    return _BACKENDS[CODECS[codec][0]](path, codec, fps, size)


@functools.lru_cache(maxsize=None)
def codec_works(codec: str) -> bool:
    """True when ``codec`` (a key of CODECS) writes an .mp4 that OpenCV reads back (two frames)."""
    frame = np.zeros((64, 64, 3), np.uint8)
    with tempfile.TemporaryDirectory(prefix="grm_codec_") as tmp:
        path = Path(tmp) / "probe.mp4"
        try:
            with quiet_stderr():
                backend = _open_backend(path, codec, 10.0, (64, 64))
                for _ in range(2):
                    backend.write(frame)
                backend.close()
        except Exception:  # noqa: BLE001  (any failure means: not usable here)
            return False
        cap = cv2.VideoCapture(str(path))
        try:
            n = 0
            while cap.read()[0]:
                n += 1
        finally:
            cap.release()
        return n == 2


def best_codec() -> str:
    """The first codec of CODECS that works on this machine ('mp4v' as the last resort)."""
    for codec in CODECS:
        if codec == "mp4v" or codec_works(codec):
            return codec
    return "mp4v"  # pragma: no cover


class VideoWriter:
    """Writes RGB frames to an .mp4 file; the size is fixed by the first frame (odd sides are padded
    by one black row/column, as H.264 needs even sides; later frames of another size are resized).

    codec: a key of CODECS, or None for :func:`best_codec` (H.264 where possible). ``codec`` and
    ``codec_description`` tell what was used. Use as a context manager or call ``close()``.
    """

    def __init__(self, path, fps: float = 30.0, codec: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        if codec is not None and codec not in CODECS:
            raise ValueError(f"codec must be one of {tuple(CODECS)}, got {codec!r}")
        self.codec = codec or best_codec()
        if self.codec not in BROWSER_CODECS:
            warnings.warn(f"{self.path}: no H.264 encoder (OpenCV has none and imageio-ffmpeg is not installed); "
                          f"writing {self.codec!r}, which browsers do not play (pip install imageio-ffmpeg)",
                          stacklevel=2)
        self._backend = None
        self._size = None
        self.frames_written = 0

    @property
    def codec_description(self) -> str:
        return CODECS[self.codec][1]

    def write(self, frame_rgb: np.ndarray) -> None:
        frame = np.asarray(frame_rgb, np.uint8)
        h, w = frame.shape[:2]
        if self._backend is None:
            self._size = (w + (w % 2), h + (h % 2))
            self._backend = _open_backend(self.path, self.codec, self.fps, self._size)
        if (w + (w % 2), h + (h % 2)) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        elif (w, h) != self._size:
            frame = np.pad(frame, ((0, self._size[1] - h), (0, self._size[0] - w), (0, 0)))
        self._backend.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------

BOX_COLOR = (255, 64, 32)       # RGB
SEARCH_COLOR = (255, 215, 0)
MIN_PANEL_HEIGHT = 256          # frames with a division panel are shown at least this high
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _put_label(image: np.ndarray, text: str, org: tuple[int, int], scale: float, color=(255, 255, 255)) -> None:
    """Text with a dark outline, legible on bright and dark backgrounds."""
    cv2.putText(image, text, org, _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, _FONT, scale, color, 1, cv2.LINE_AA)


def _fit_scale(text: str, width: int, max_scale: float = 0.6, min_scale: float = 0.3) -> float:
    """The largest font scale <= max_scale at which ``text`` fits ``width`` pixels (>= min_scale)."""
    (tw, _), _ = cv2.getTextSize(text, _FONT, 1.0, 1)
    return float(np.clip(width / max(tw, 1), min_scale, max_scale))


def draw_box(image: np.ndarray, box_xywh, color=BOX_COLOR, thickness: int = 2, label: str | None = None) -> np.ndarray:
    """Draws an (x, y, w, h) rectangle in place on an RGB uint8 image; returns the image."""
    x, y, w, h = (float(v) for v in box_xywh)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return image
    p1 = (int(round(x)), int(round(y)))
    p2 = (int(round(x + w)), int(round(y + h)))
    cv2.rectangle(image, p1, p2, color, thickness, lineType=cv2.LINE_AA)
    if label:
        cv2.putText(image, label, (p1[0], max(12, p1[1] - 4)), _FONT, 0.45, color, 1, cv2.LINE_AA)
    return image


def _division_tile(search_crop: np.ndarray, decision: np.ndarray, tile: int, shade: float) -> np.ndarray:
    """One tile: the crop resized to ``tile`` pixels, E_S tokens darkened, token grid lines."""
    grid = int(round(math.sqrt(decision.shape[-1])))
    mask = np.asarray(decision, bool).reshape(grid, grid)
    factor = cv2.resize(np.where(mask, 1.0, shade).astype(np.float32), (tile, tile), interpolation=cv2.INTER_NEAREST)
    image = cv2.resize(search_crop, (tile, tile), interpolation=cv2.INTER_AREA if tile < search_crop.shape[0]
                       else cv2.INTER_LINEAR)
    shaded = (image.astype(np.float32) * factor[:, :, None]).astype(np.uint8)
    step = tile / grid
    for g in range(1, grid):  # grid lines make the token layout visible
        c = int(round(g * step))
        shaded[c, :, :] //= 2
        shaded[:, c, :] //= 2
    return shaded


def division_panel(search_crop: np.ndarray, decisions: np.ndarray, layers: Sequence[int], size: int,
                   shade: float = 0.25) -> np.ndarray:
    """Fig. 3 style panel: the search crop once per chosen dividing layer, tokens in E_S darkened.

    search_crop: (S, S, 3) uint8; decisions: (L, Nx) bool rows for ``layers`` (True = E_A, kept
    bright; False = E_S, multiplied by ``shade``); size: panel HEIGHT in pixels. Tiles are square,
    ``size // rows`` pixels, in a near-square grid of ``cols`` x ``rows``; the panel is
    (size, cols * tile, 3). Each tile is labelled with its 0-based block index and E_A share in a
    font sized to fit the tile, so labels never overlap.
    """
    n = len(layers)
    if n == 0:
        return np.zeros((size, size, 3), np.uint8)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    tile = max(8, size // rows)
    panel = np.zeros((size, cols * tile, 3), np.uint8)
    widest = max((f"L{layer} E_A 100%" for layer in layers), key=len)
    scale = _fit_scale(widest, tile - 6)
    (_, text_h), _ = cv2.getTextSize(widest, _FONT, scale, 1)
    for k, (layer, dec) in enumerate(zip(layers, decisions)):
        t = _division_tile(search_crop, dec, tile, shade)
        t[-2:], t[:, -2:] = 0, 0  # a gap between tiles
        _put_label(t, f"L{layer} E_A {np.mean(dec):.0%}", (3, 3 + text_h), scale)
        r, c = divmod(k, cols)
        panel[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = t
    return panel


def render_frame(frame: np.ndarray, box_xywh, frame_index: int | None = None, search_box_xywh=None,
                 search_crop: np.ndarray | None = None, decisions: np.ndarray | None = None,
                 layers: Sequence[int] = (), search_factor: float = 4.0,
                 min_height: int = MIN_PANEL_HEIGHT) -> np.ndarray:
    """Annotated RGB frame: predicted box (and the search region) and the frame number.

    With ``decisions`` a division panel (see :func:`division_panel`) as high as the frame is
    appended on the right; frames lower than ``min_height`` are then enlarged by the smallest
    integer factor that reaches it (OTB's 128x96 -> 384x288), so the panel stays legible. Boxes
    are given in the original frame's pixels.
    """
    img = np.ascontiguousarray(frame)
    k = 1
    if decisions is not None and img.shape[0] < min_height:
        k = int(math.ceil(min_height / img.shape[0]))
        img = cv2.resize(img, (img.shape[1] * k, img.shape[0] * k), interpolation=cv2.INTER_LINEAR)
    else:
        img = img.copy()
    if search_box_xywh is not None and decisions is not None:
        x, y, w, h = (float(v) for v in search_box_xywh)
        side = math.ceil(math.sqrt(w * h) * search_factor)
        cx, cy = x + w / 2, y + h / 2
        draw_box(img, np.multiply((cx - side / 2, cy - side / 2, side, side), k), SEARCH_COLOR, 1)
    draw_box(img, np.multiply(np.asarray(box_xywh, np.float64), k), BOX_COLOR, 2)
    if frame_index is not None:
        _put_label(img, f"#{frame_index}", (6, 18), 0.55)
    if decisions is None:
        return img
    h = img.shape[0]
    if search_crop is None:
        panel = division_panel(np.zeros((16, 16, 3), np.uint8), decisions, layers, h)
    else:
        panel = division_panel(search_crop, decisions, layers, h)
    return np.concatenate([img, panel], axis=1)
