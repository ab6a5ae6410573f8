"""Frame input for tracking: image files, frame folders and video files, checked so that damaged
input never passes silently.

Frames are (H, W, 3) uint8 RGB everywhere (OpenCV decodes BGR; converted like the official loader).

* :func:`read_image`: one image file; missing, unreadable, truncated (JPEG without its end marker,
  PNG without IEND; see :mod:`grm_jax.image_check`) -> DataError naming the file.
* :class:`FrameSource` (track mode): a video file or a folder of images, in order. A frame whose
  size differs from the first frame's raises a DataError naming it; a video that stops decoding
  before the frame count its container lists issues a :class:`VideoEndedEarlyWarning` with both
  numbers (``ended_early`` / ``expected`` / ``decoded`` afterwards).
* :func:`check_same_size`: the frame-size check shared with the batched tracker, whose
  ``on_bad_frame`` policy ('error' | 'skip', :class:`grm_jax.track.batched.BatchedTracker`) then
  stops at such a frame or carries the previous box over it.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from grm_jax.datasets.source import decode_image
from grm_jax.errors import DataError, MissingFileError

__all__ = [
    "FrameSource",
    "IMAGE_EXTENSIONS",
    "VideoEndedEarlyWarning",
    "check_same_size",
    "iter_frames",
    "list_frame_files",
    "read_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")



class VideoEndedEarlyWarning(UserWarning):
    """A video file stopped decoding before the frame count its container lists (damaged file)."""


def read_image(path) -> np.ndarray:
    """Reads one image file -> (H, W, 3) uint8 RGB (decoded like ``cv2.imread``, BGR -> RGB).

    MissingFileError for a missing file; DataError naming the file when it cannot be read, is
    truncated (JPEG / PNG) or cannot be decoded."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"missing frame file: {path}")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise DataError(f"cannot read image file: {path} ({err.strerror or err})") from None
    return decode_image(data, path)


def check_same_size(frame: np.ndarray, first_hw: tuple[int, int], what: str) -> np.ndarray:
    """DataError naming ``what`` when ``frame`` is not as high and wide as the first frame."""
    h, w = frame.shape[:2]
    if (h, w) != tuple(first_hw):
        raise DataError(f"{what}: {w}x{h} pixels, but the first frame of the sequence is "
                        f"{first_hw[1]}x{first_hw[0]}", hint="all frames of a sequence must have one size")
    return frame


def list_frame_files(folder) -> list[str]:
    """Image files of a folder, sorted by name; DataError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"missing frame folder: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder: {folder}")
    return [str(folder / n) for n in names]


def _open_capture(path: str) -> cv2.VideoCapture:
    """An opened capture of the video file ``path``; DataError naming it when its name is not
    UTF-8 (OpenCV crashes on such a path), when it is not a video OpenCV can read (or holds no
    frame), or when its frames are larger than the image pixel limit."""
    from grm_jax.image_check import max_image_pixels  # noqa: PLC0415
    from grm_jax.track.video import quiet_stderr  # noqa: PLC0415

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"video file name is not UTF-8: {ascii(path)}", hint="rename the file") from None
    with quiet_stderr():  # ffmpeg's own message ('moov atom not found') names no file
        cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise DataError(f"cannot open video file (not a video that OpenCV / ffmpeg can read, or it holds no "
                        f"frame): {path}")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if w * h > max_image_pixels():
        cap.release()
        raise DataError(f"{path}: video frames of {w}x{h} pixels are larger than the limit of "
                        f"{max_image_pixels():,} pixels",
                        hint="resize the video, or raise the limit with the environment variable GRM_MAX_IMAGE_PIXELS")
    return cap


def _check_exists(source: str) -> None:
    if not os.path.exists(source):
        raise MissingFileError(f"missing video file or frame folder: {source}")


class FrameSource:
    """The frames of a video file or a folder of images (sorted by name), in order.

    source: a path. Opening checks that it exists (and, for a video, that OpenCV can open it), so
    errors come before any model is loaded. Iterate once; ``close()`` (or ``with``) releases a video.

    expected: number of frames (folder: image files; video: the container's count, None when it
      lists none); decoded: frames yielded so far; fps: the video's frame rate (None for folders or
      unknown); ended_early: True once a video stopped before ``expected`` (a
      :class:`VideoEndedEarlyWarning` naming both numbers was issued).
    """

    def __init__(self, source):
        self.source = os.fspath(source)
        self.decoded = 0
        self.ended_early = False
        self._cap = None
        self.files: list[str] | None = None
        self.fps: float | None = None
        if os.path.isdir(self.source):
            self.files = list_frame_files(self.source)
            self.expected: int | None = len(self.files)
            return
        _check_exists(self.source)
        self._cap = _open_capture(self.source)
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.expected = count if count > 0 else None
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if math.isfinite(fps) and fps > 0 else None

    @property
    def is_video(self) -> bool:
        return self.files is None

    def describe(self, index: int) -> str:
        """'frame 12 (path/00013.jpg)' or 'frame 12 of video.mp4' (0-based index)."""
        if self.files is not None:
            return f"frame {index} ({self.files[index]})"
        return f"frame {index} of {self.source}"

    def _raw(self) -> Iterator[np.ndarray]:
        if self.files is not None:
            for f in self.files:
                yield read_image(f)
            return
        while self._cap is not None:
            ok, frame = self._cap.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[np.ndarray]:
        first_hw = None
        try:
            for frame in self._raw():
                if first_hw is None:
                    first_hw = frame.shape[:2]
                else:
                    check_same_size(frame, first_hw, self.describe(self.decoded))
                self.decoded += 1
                yield frame
        finally:
            self.close()
        if self.is_video:
            self._check_complete()

    def _check_complete(self) -> None:
        if self.decoded == 0:
            raise DataError(f"no frames could be decoded from video file: {self.source}")
        if self.expected is not None and self.decoded < self.expected:
            self.ended_early = True
            warnings.warn(f"{self.source}: decoding stopped after {self.decoded} of the {self.expected} frames its "
                          f"container lists (damaged file?); only those {self.decoded} frames were tracked",
                          VideoEndedEarlyWarning, stacklevel=3)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_frames(source) -> Iterator[np.ndarray]:
    """Yields RGB uint8 frames of a video file or a folder of images (see :class:`FrameSource`)."""
    yield from FrameSource(source)
