"""Box math: the single place for box format conversions, IoU and tracker box post-processing.

Conventions
-----------
* Boxes are arrays whose LAST axis has 4 entries; any leading shape ``(...)`` is allowed.
* ``xywh``   = (x1, y1, w, h): top-left corner and size (pixels or normalized).
* ``xyxy``   = (x1, y1, x2, y2): top-left and bottom-right corners, continuous coordinates
  (x2 = x1 + w, no "-1").
* ``cxcywh`` = (cx, cy, w, h): centre and size, cx = x1 + w / 2.
* (x, y) = (column, row).

Array module
------------
Every function picks its array module from its inputs: if any input is a ``jax.Array`` (this
includes tracers under ``jit``/``grad``) the computation uses ``jax.numpy`` and returns a jax
array; otherwise it uses numpy and returns numpy arrays (lists/tuples are converted with
``np.asarray``). The jax paths only use differentiable, shape-static operations, so they are
``jit``- and ``grad``-friendly. jax is imported lazily: numpy-only callers never import it.
"""
from __future__ import annotations

import sys

import numpy as np

__all__ = [
    "array_module",
    "xywh_to_xyxy",
    "cxcywh_to_xyxy",
    "box_area",
    "generalized_iou",
    "iou_xywh",
    "center_xywh",
    "map_box_back",
    "clip_box_with_margin",
]


def _is_jax_array(a) -> bool:
    """True when ``a`` is a jax array or tracer (only checked if jax is already imported)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    return isinstance(a, jax.Array)


def array_module(*arrays):
    """Return ``jax.numpy`` if any of ``arrays`` is a jax array/tracer, else ``numpy``."""
    for a in arrays:
        if _is_jax_array(a):
            import jax.numpy as jnp

            return jnp
    return np


def _as_boxes(xp, b, name: str = "box"):
    """Convert ``b`` to an array of module ``xp`` and check that its last axis has 4 entries."""
    arr = xp.asarray(b)
    if arr.ndim < 1 or arr.shape[-1] != 4:
        raise ValueError(f"{name}: expected an array with last axis of size 4, got shape {tuple(arr.shape)}")
    return arr


def _split(b):
    return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


# ----------------------------------------------------------------------------------------------
# Format conversions
# ----------------------------------------------------------------------------------------------

def xywh_to_xyxy(b):
    """(..., 4) (x1, y1, w, h) -> (..., 4) (x1, y1, x1 + w, y1 + h)."""
    xp = array_module(b)
    b = _as_boxes(xp, b)
    x, y, w, h = _split(b)
    return xp.stack([x, y, x + w, y + h], axis=-1)


def cxcywh_to_xyxy(b):
    """(..., 4) (cx, cy, w, h) -> (..., 4) (cx - w/2, cy - h/2, cx + w/2, cy + h/2)."""
    xp = array_module(b)
    b = _as_boxes(xp, b)
    cx, cy, w, h = _split(b)
    return xp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


# ----------------------------------------------------------------------------------------------
# Areas and overlaps
# ----------------------------------------------------------------------------------------------

def box_area(b_xyxy):
    """(..., 4) xyxy -> (...) area (x2 - x1) * (y2 - y1), not clamped (negative for flipped boxes)."""
    xp = array_module(b_xyxy)
    b = _as_boxes(xp, b_xyxy)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def generalized_iou(boxes1_xyxy, boxes2_xyxy):
    """Elementwise generalized IoU of two box arrays in continuous xyxy.

    Shapes: boxes1 (..., 4), boxes2 (..., 4) (broadcastable) -> (giou, iou), each (...).
    Semantics of the official ``lib.utils.box_ops.generalized_box_iou`` (elementwise form):
    inter = prod(clamp(min(br) - max(tl), 0)); union = area1 + area2 - inter; iou = inter / union;
    enclose = prod(clamp(max(br) - min(tl), 0)); giou = iou - (enclose - union) / enclose.
    No epsilon is added (degenerate boxes give nan/inf exactly like the official code); the
    official assertion that x2 >= x1 is not reproduced here (callers decide).
    """
    xp = array_module(boxes1_xyxy, boxes2_xyxy)
    b1 = _as_boxes(xp, boxes1_xyxy, "boxes1_xyxy")
    b2 = _as_boxes(xp, boxes2_xyxy, "boxes2_xyxy")
    area1 = box_area(b1)
    area2 = box_area(b2)
    lt = xp.maximum(b1[..., :2], b2[..., :2])
    rb = xp.minimum(b1[..., 2:], b2[..., 2:])
    wh = xp.maximum(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    iou = inter / union
    lt_c = xp.minimum(b1[..., :2], b2[..., :2])
    rb_c = xp.maximum(b1[..., 2:], b2[..., 2:])
    wh_c = xp.maximum(rb_c - lt_c, 0)
    enclose = wh_c[..., 0] * wh_c[..., 1]
    giou = iou - (enclose - union) / enclose
    return giou, iou


def iou_xywh(a_xywh, b_xywh, pixel_inclusive: bool = True):
    """Elementwise IoU of two (..., 4) xywh arrays -> (...).

    pixel_inclusive=True: pytracking/LaSOT convention (docs/PARITY.md §9): a box covers pixels
    tl .. tl + wh - 1, i.e. br = tl + wh - 1 and the overlap size is br - tl + 1 clamped at 0;
    union = w_a h_a + w_b h_b - intersection.
    pixel_inclusive=False: continuous boxes, overlap = clamp(min(br) - max(tl), 0) with br = tl + wh.
    Where the union is 0 (both boxes empty) the IoU is defined as 0.
    """
    xp = array_module(a_xywh, b_xywh)
    a = _as_boxes(xp, a_xywh, "a_xywh")
    b = _as_boxes(xp, b_xywh, "b_xywh")
    tl = xp.maximum(a[..., :2], b[..., :2])
    if pixel_inclusive:
        br = xp.minimum(a[..., :2] + a[..., 2:] - 1.0, b[..., :2] + b[..., 2:] - 1.0)
        sz = xp.maximum(br - tl + 1.0, 0)
    else:
        br = xp.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
        sz = xp.maximum(br - tl, 0)
    inter = sz[..., 0] * sz[..., 1]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    ok = union > 0
    safe_union = xp.where(ok, union, 1.0)
    return xp.where(ok, inter / safe_union, 0.0)


def center_xywh(b_xywh, pixel_inclusive: bool = True):
    """(..., 4) xywh -> (..., 2) centre. pixel_inclusive: tl + (wh - 1)/2 (pytracking), else tl + wh/2."""
    xp = array_module(b_xywh)
    b = _as_boxes(xp, b_xywh)
    if pixel_inclusive:
        return b[..., :2] + 0.5 * (b[..., 2:] - 1.0)
    return b[..., :2] + 0.5 * b[..., 2:]


# ----------------------------------------------------------------------------------------------
# Tracker post-processing (docs/PARITY.md §7)
# ----------------------------------------------------------------------------------------------

def map_box_back(pred_box_cxcywh, prev_state_xywh, resize_factor: float, search_size: int):
    """Crop-relative (cx, cy, w, h) pixels -> image (x1, y1, w, h), in float64.

    pred_box_cxcywh: (..., 4) the device step's ``(box * S) / resize_factor`` (converted to float64 here).
    prev_state_xywh: (..., 4) previous tracker state (x1, y1, w, h) the search crop was centred on.
    cx_img = cx + (cx_prev - 0.5 * S / resize_factor), likewise y; result = (cx_img - w/2,
    cy_img - h/2, w, h).
    """
    xp = array_module(pred_box_cxcywh, prev_state_xywh)
    dt = xp.float64 if xp is np else None
    p = _as_boxes(xp, pred_box_cxcywh, "pred_box_cxcywh")
    s = _as_boxes(xp, prev_state_xywh, "prev_state_xywh")
    if dt is not None:
        p = p.astype(dt)
        s = s.astype(dt)
    cx_prev = s[..., 0] + 0.5 * s[..., 2]
    cy_prev = s[..., 1] + 0.5 * s[..., 3]
    half_side = 0.5 * search_size / resize_factor
    cx, cy, w, h = _split(p)
    cx_real = cx + (cx_prev - half_side)
    cy_real = cy + (cy_prev - half_side)
    return xp.stack([cx_real - 0.5 * w, cy_real - 0.5 * h, w, h], axis=-1)


def clip_box_with_margin(box_xywh, H, W, margin=10):
    """Clip an (x1, y1, w, h) box to an H x W image keeping at least ``margin`` px.

    In this order: x2 = x1 + w, y2 = y1 + h; x1 = min(max(0, x1), W - m); x2 = min(max(m, x2), W);
    y1 = min(max(0, y1), H - m); y2 = min(max(m, y2), H); w = max(m, x2 - x1); h = max(m, y2 - y1).
    Works on (..., 4); numpy input is computed in float64. Returns (x1, y1, w, h).
    """
    xp = array_module(box_xywh)
    b = _as_boxes(xp, box_xywh, "box_xywh")
    if xp is np:
        b = b.astype(np.float64)
    x1, y1, w, h = _split(b)
    x2 = x1 + w
    y2 = y1 + h
    x1 = xp.minimum(xp.maximum(0, x1), W - margin)
    x2 = xp.minimum(xp.maximum(margin, x2), W)
    y1 = xp.minimum(xp.maximum(0, y1), H - margin)
    y2 = xp.minimum(xp.maximum(margin, y2), H)
    w = xp.maximum(margin, x2 - x1)
    h = xp.maximum(margin, y2 - y1)
    return xp.stack([x1, y1, w, h], axis=-1)
