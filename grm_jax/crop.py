"""Square context crop around a box: the one crop used by both training and tracking (docs/PARITY.md §6).

Coordinates: pixels, (x, y) = (column, row); boxes are (x1, y1, w, h) ("xywh").
Images: HWC (H, W, C) arrays, normally uint8 RGB. Crops come out as (S, S, C) of the same dtype.

The crop is bit-exact with the official ``sample_target``: the geometry uses Python float64
arithmetic with ``round`` (half to even) and ``math.ceil``; the padded square is resized with
``cv2.resize`` (INTER_LINEAR, OpenCV's fixed-point arithmetic for uint8), which a float
bilinear resize does NOT reproduce.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from grm_jax.boxes import array_module
from grm_jax.errors import DataError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MAX_CROP_PIXELS", "CropGeometry", "crop_geometry", "sample_target",
           "transform_image_to_crop"]

# Largest crop side squared that sample_target builds (16384 x 16384: about 3 GB with its padding
# mask). A box of the image's size with the official factors (2 / 4 / 5) stays far below it for
# any image under the frame pixel limit; an absurd factor (search_factor=10000) is refused instead
# of allocating hundreds of GiB.
MAX_CROP_PIXELS = 16384 * 16384

_CV_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)  # what cv2.flip takes

# Crops enter the network as (pixel / 255 - mean) / std per RGB channel, in training and tracking.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CropGeometry(NamedTuple):
    """Integer geometry of a square crop (all Python ints, image pixels).

    crop_sz: side of the square crop before resizing.
    x1, y1: top-left corner of the crop in the image (may be negative); x2 = x1 + crop_sz.
    x1_pad, x2_pad, y1_pad, y2_pad: zero padding added left, right, top, bottom. Note the official
    "+1": x2_pad = max(x2 - W + 1, 0), so the image's last column/row is never taken when the
    crop reaches it (it is padded instead).
    """

    crop_sz: int
    x1: int
    y1: int
    x1_pad: int
    x2_pad: int
    y1_pad: int
    y2_pad: int

    @property
    def x2(self) -> int:
        return self.x1 + self.crop_sz

    @property
    def y2(self) -> int:
        return self.y1 + self.crop_sz


def _box_floats(box_xywh) -> tuple[float, float, float, float]:
    """Box -> four Python floats (float64), like the official ``tensor.tolist()``."""
    arr = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    if arr.shape != (4,):
        raise ValueError(f"box_xywh: expected 4 numbers (x, y, w, h), got shape {np.shape(box_xywh)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"box_xywh: non-finite value in {arr.tolist()}")
    return tuple(float(v) for v in arr)  # type: ignore[return-value]


def crop_geometry(box_xywh, factor: float, image_hw) -> CropGeometry:
    """Geometry of the crop of side ceil(sqrt(w*h) * factor) centred on ``box_xywh`` (docs/PARITY.md §6).

    box_xywh: 4 numbers (x1, y1, w, h) in pixels; image_hw: (H, W) of the image.
    crop_sz = ceil(sqrt(w*h) * factor); x1 = round(x + w/2 - crop_sz/2) (half to even), y1 likewise;
    pads: left max(0, -x1), right max(x2 - W + 1, 0), top/bottom likewise.
    Raises ValueError when crop_sz < 1 (or w*h < 0 / non-finite box).
    """
    x, y, w, h = _box_floats(box_xywh)
    if w * h < 0:
        raise ValueError(f"box_xywh {[x, y, w, h]}: negative area w*h = {w * h}")
    crop_sz = math.ceil(math.sqrt(w * h) * float(factor))
    if crop_sz < 1:
        raise ValueError(f"box_xywh {[x, y, w, h]} with factor {factor}: crop size {crop_sz} < 1 (box too small)")
    H, W = int(image_hw[0]), int(image_hw[1])
    x1 = round(x + 0.5 * w - crop_sz * 0.5)
    y1 = round(y + 0.5 * h - crop_sz * 0.5)
    x2 = x1 + crop_sz
    y2 = y1 + crop_sz
    return CropGeometry(
        crop_sz=int(crop_sz),
        x1=int(x1),
        y1=int(y1),
        x1_pad=int(max(0, -x1)),
        x2_pad=int(max(x2 - W + 1, 0)),
        y1_pad=int(max(0, -y1)),
        y2_pad=int(max(y2 - H + 1, 0)),
    )


def sample_target(image, box_xywh, factor: float, output_size: int | None, setting: str = "crop factor"):
    """Crop a square region of side ceil(sqrt(w*h)*factor) around the box, pad and resize.

    image: (H, W, C) array (uint8 RGB for the tracker/training). box_xywh: (x1, y1, w, h) pixels.
    Returns (crop, resize_factor, att_mask):
      crop: (S, S, C) same dtype as image, S = output_size (zero padding outside the image);
      resize_factor: float, output_size / crop_sz (1.0 when output_size is None);
      att_mask: (S, S) bool, True = padding. It is a float64 0/1 mask of the padded crop, resized
      with cv2.resize (INTER_LINEAR) and cast to bool (True where the resized value is non-zero).
    With output_size=None the padded crop is returned unresized.
    A crop side above sqrt(MAX_CROP_PIXELS) raises DataError naming ``setting`` (the config key
    that holds ``factor``) before anything is allocated.
    """
    im = np.asarray(image)
    if im.ndim != 3:
        raise ValueError(f"image: expected (H, W, C) array, got shape {im.shape}")
    g = crop_geometry(box_xywh, factor, im.shape[:2])
    if g.crop_sz * g.crop_sz > MAX_CROP_PIXELS:
        w, h = _box_floats(box_xywh)[2:]
        raise DataError(f"{setting}={factor:g}: the crop around the {w:g}x{h:g} box would be {g.crop_sz}x{g.crop_sz} "
                        f"pixels (limit {MAX_CROP_PIXELS:,} pixels)",
                        hint="use the official factors (template 2, search 4; 5 for GRM-L320)")
    # In-image part; Python slice semantics exactly as the official code (the end index is
    # min(x2, W - 1) because of the +1 in the right/bottom padding).
    part = im[g.y1 + g.y1_pad:g.y2 - g.y2_pad, g.x1 + g.x1_pad:g.x2 - g.x2_pad, :]
    if part.strides[1] < 0 and part.size and part.shape[2] <= 4 and part.dtype in _CV_DTYPES:
        # a horizontally reversed view (the training's joint flip): numpy copies it element by element
        # (20x slower than a row copy); copy the rows in memory order and mirror them with OpenCV
        part = cv2.flip(np.ascontiguousarray(part[:, ::-1, :]), 1).reshape(part.shape)
    padded = np.pad(part, ((g.y1_pad, g.y2_pad), (g.x1_pad, g.x2_pad), (0, 0)), mode="constant")
    ph, pw = padded.shape[:2]
    mask = np.ones((ph, pw), dtype=np.float64)  # 1 = padding
    end_y = -g.y2_pad if g.y2_pad > 0 else None  # official slice ends (also for degenerate crops)
    end_x = -g.x2_pad if g.x2_pad > 0 else None
    mask[g.y1_pad:end_y, g.x1_pad:end_x] = 0.0
    if output_size is None:
        return padded, 1.0, mask.astype(bool)
    out = int(output_size)
    if out < 1:
        raise ValueError(f"output_size must be >= 1, got {output_size}")
    if ph < 1 or pw < 1:
        raise ValueError(f"box_xywh {list(box_xywh)}: empty crop ({ph}x{pw}) for image {im.shape[:2]}")
    resize_factor = out / g.crop_sz
    if padded.shape[2] <= 4:
        crop = cv2.resize(np.ascontiguousarray(padded), (out, out), interpolation=cv2.INTER_LINEAR)
        if crop.ndim == 2:  # cv2 drops a single channel axis
            crop = crop[:, :, None]
    else:
        raise ValueError(f"image: expected at most 4 channels, got {padded.shape[2]}")
    att_mask = cv2.resize(mask, (out, out), interpolation=cv2.INTER_LINEAR).astype(bool)
    return crop, resize_factor, att_mask


def transform_image_to_crop(box_in_xywh, box_extract_xywh, resize_factor, crop_sz, normalize: bool = False):
    """Map a box from image coordinates into the crop taken around ``box_extract_xywh`` (docs/PARITY.md §6).

    box_in_xywh, box_extract_xywh: (..., 4) (x1, y1, w, h) image pixels (numpy or jax).
    resize_factor: crop scale (output_size / crop side), scalar or (...,) array.
    crop_sz: output crop size, a scalar or a (2,) pair (w, h) like the official Tensor([s, s]).
    centre = (crop_sz - 1)/2 + (c_in - c_extract) * resize_factor; size = wh_in * resize_factor.
    Returns (..., 4) (x1, y1, w, h) in crop pixels, divided by crop_sz[0] when ``normalize``.
    Computed in the dtype of box_in (float32 in the official training code).
    """
    xp = array_module(box_in_xywh, box_extract_xywh, resize_factor)
    b = xp.asarray(box_in_xywh)
    if not xp.issubdtype(b.dtype, xp.floating):
        b = b.astype(xp.float64 if xp is np else xp.float32)
    dt = b.dtype
    e = xp.asarray(box_extract_xywh).astype(dt)
    if b.shape[-1] != 4 or e.shape[-1] != 4:
        raise ValueError(f"box_in_xywh / box_extract_xywh: last axis must be 4, got {b.shape}, {e.shape}")
    sz = xp.asarray(crop_sz).astype(dt)
    if sz.ndim == 0:
        sz = xp.stack([sz, sz])
    rf = xp.asarray(resize_factor).astype(dt)
    if rf.ndim > 0:
        rf = rf[..., None]
    c_ext = e[..., 0:2] + 0.5 * e[..., 2:4]
    c_in = b[..., 0:2] + 0.5 * b[..., 2:4]
    c_out = (sz - 1) / 2 + (c_in - c_ext) * rf
    wh_out = b[..., 2:4] * rf
    out = xp.concatenate([c_out - 0.5 * wh_out, wh_out], axis=-1)
    if normalize:
        return out / sz[0]
    return out
