"""Decoding encoded frames into (H, W, 3) uint8 RGB arrays, at full or reduced size.

:func:`decode_image` is the one decoder of training and tracking frames. It gives the pixels of
``cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)`` (what the official
code reads), bit for bit, for every format OpenCV reads; where OpenCV has ``cv2.IMREAD_COLOR_RGB`` (5.x
here) it asks the decoder for RGB directly (``cv2.IMREAD_COLOR_RGB``: libjpeg-turbo writes RGB instead of BGR, with the
same arithmetic) and saves the conversion pass over the frame (tests/test_decode.py checks both
against each other on JPEG, PNG, BMP, WebP, grey and RGBA files).

:func:`decode_reduced` decodes a JPEG at 1/k of its size, k in {1, 2, 4, 8}, with libjpeg's DCT
scaling (``cv2.IMREAD_REDUCED_COLOR_k``): about 3x faster for k = 2 on a 720p frame, but the
pixels are not those of a down-scaled full decode. Only the training option
``data.reduced_decode`` uses it (data_pipelines/frames.py).
"""
from __future__ import annotations

import math

import numpy as np

from grm_jax.errors import DataError
from grm_jax.image_check import check_complete, check_pixels, image_size

__all__ = ["CorruptImageError", "REDUCTIONS", "decode_image", "decode_reduced"]

REDUCTIONS = (1, 2, 4, 8)  # the DCT scalings libjpeg offers through OpenCV
_JPEG_SOI = b"\xff\xd8"


class CorruptImageError(DataError):
    """An image file of a dataset is absent, unreadable or cannot be decoded (names the file).
    The training pipeline skips such frames with a warning."""


def _imdecode_rgb(buf: np.ndarray, reduce: int):
    """cv2.imdecode into RGB at 1/reduce size (None when OpenCV cannot decode ``buf``)."""
    import cv2  # noqa: PLC0415  (only processes that decode frames need OpenCV)

    scale = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[reduce] & ~cv2.IMREAD_COLOR  # the scale bits alone
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)
    if rgb_flag is not None:
        return cv2.imdecode(buf, scale | rgb_flag)
    img = cv2.imdecode(buf, scale | cv2.IMREAD_COLOR)  # older OpenCV: BGR, then one conversion pass
    return img if img is None or img.ndim != 3 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _checked(data: bytes, name) -> np.ndarray:
    if not data:
        raise CorruptImageError(f"empty image file: {name}")
    check_complete(data, name, CorruptImageError)  # libjpeg decodes a truncated JPEG without failing
    check_pixels(data, name, CorruptImageError)  # decompression bombs: refused from the header
    return np.frombuffer(data, dtype=np.uint8)


def _usable(img) -> bool:
    return img is not None and img.ndim == 3 and img.shape[0] >= 1 and img.shape[1] >= 1


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes -> (H, W, 3) uint8 RGB (EXIF orientation applied, as ``cv2.imread``).
    CorruptImageError naming ``name`` when the bytes are empty, truncated, too large or cannot be
    decoded."""
    img = _imdecode_rgb(_checked(data, name), 1)
    if not _usable(img):
        raise CorruptImageError(f"cannot read image (corrupt or unsupported format): {name}")
    return img


def decode_reduced(data: bytes, name: str, reduce: int) -> tuple[np.ndarray, int, tuple[int, int]]:
    """Encoded bytes -> (image, k, (H, W)): the frame decoded at 1/k of its size and the size
    (H, W) of the full decode.

    JPEG: k = ``reduce`` (1, 2, 4 or 8); the image is (ceil(H/k), ceil(W/k), 3) uint8 RGB, its
    pixel (r, c) covering the full frame's pixels [k r, k r + k) x [k c, k c + k), so image
    coordinates are full coordinates / k. Other formats, and JPEGs whose decoded size does not
    match their header (an unusual EXIF orientation), are decoded at full size (k = 1).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if reduce == 1 or not data.startswith(_JPEG_SOI):
        img = decode_image(data, name)
        return img, 1, img.shape[:2]
    size = image_size(data)
    img = _imdecode_rgb(_checked(data, name), reduce)
    if not _usable(img):
        raise CorruptImageError(f"cannot read image (corrupt or unsupported format): {name}")
    if size is not None:
        width, height = size
        for full_hw in ((height, width), (width, height)):  # as stored, or turned by its EXIF orientation
            if img.shape[:2] == (math.ceil(full_hw[0] / reduce), math.ceil(full_hw[1] / reduce)):
                return img, reduce, full_hw
    img = decode_image(data, name)
    return img, 1, img.shape[:2]
