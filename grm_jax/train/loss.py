"""Training losses: weighted focal (heatmap) + GIoU + L1 on boxes, as OSTrack's/GRM's
``GRMActor.compute_losses``. Pure ``jax.numpy``; jit- and grad-friendly.

Layouts: maps NHWC, score map (B, h, w, 1) or (B, h, w); boxes normalized to the search crop.
The predicted boxes are the network's own (``grm_jax.model.head.decode_boxes`` at the raw
score peak, in ``model.apply(...)["boxes"]``).
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from grm_jax.boxes import cxcywh_to_xyxy, generalized_iou, xywh_to_xyxy

__all__ = ["focal_loss", "giou_l1_losses", "compute_losses", "LOSS_WEIGHTS"]

LOSS_WEIGHTS = {"focal": 1.0, "giou": 2.0, "l1": 5.0}


def focal_loss(pred: jax.Array, target: jax.Array, alpha: int = 2, beta: int = 4) -> jax.Array:
    """CenterNet focal loss summed over the WHOLE batch, divided by the number of positives.

    pred: predicted heatmap in (0, 1) (already sigmoid-clamped), any shape; target same shape.
    Positives: target == 1. pos = log(p)(1-p)^alpha; neg = log(1-p) p^alpha (1-target)^beta over
    target < 1; p is clamped below at 1e-12. No positive at all -> -sum(neg).
    """
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    if pred.shape != target.shape:
        raise ValueError(f"focal_loss: pred {pred.shape} and target {target.shape} differ")
    pos_idx = (target == 1.0).astype(jnp.float32)
    neg_idx = (target < 1.0).astype(jnp.float32)
    neg_w = jnp.power(1.0 - target, beta)
    p = jnp.maximum(pred, 1e-12)
    pos_loss = jnp.sum(jnp.log(p) * jnp.power(1.0 - p, alpha) * pos_idx)
    neg_loss = jnp.sum(jnp.log(1.0 - p) * jnp.power(p, alpha) * neg_w * neg_idx)
    num_pos = jnp.sum(pos_idx)
    return jnp.where(num_pos == 0, -neg_loss, -(pos_loss + neg_loss) / jnp.maximum(num_pos, 1.0))


def giou_l1_losses(pred_xyxy: jax.Array, gt_xyxy: jax.Array):
    """(N, 4) xyxy each -> (giou_loss = mean(1 - GIoU), l1 = mean |pred - gt|, mean IoU).

    Official semantics of a flipped box (x2 < x1 or y2 < y1 in either input): the GIoU loss and
    the IoU are 0 for the whole batch (the official assert + bare except); the L1 term is kept.
    The GIoU is then computed on substitute boxes so neither the value nor its gradient is NaN.
    """
    pred_xyxy = jnp.asarray(pred_xyxy, jnp.float32)
    gt_xyxy = jnp.asarray(gt_xyxy, jnp.float32)
    bad = jnp.any(pred_xyxy[:, 2:] < pred_xyxy[:, :2]) | jnp.any(gt_xyxy[:, 2:] < gt_xyxy[:, :2])
    unit = jnp.asarray([0.0, 0.0, 1.0, 1.0], jnp.float32)
    safe_pred = jnp.where(bad, unit, pred_xyxy)
    safe_gt = jnp.where(bad, unit, gt_xyxy)
    giou, iou = generalized_iou(safe_pred, safe_gt)
    giou_loss = jnp.where(bad, 0.0, jnp.mean(1.0 - giou))
    mean_iou = jnp.where(bad, 0.0, jnp.mean(jax.lax.stop_gradient(iou)))
    l1 = jnp.mean(jnp.abs(pred_xyxy - gt_xyxy))
    return giou_loss, l1, mean_iou


def compute_losses(pred_boxes_cxcywh: jax.Array, score_map: jax.Array, gt_boxes_x1y1wh: jax.Array,
                   gt_heatmap: jax.Array, weights: Mapping[str, float] | None = None):
    """GRM training loss. Returns (total, metrics).

    pred_boxes_cxcywh: (B, 4) or (B, 1, 4) network boxes (normalized cx, cy, w, h), NOT clamped.
    score_map: (B, h, w, 1) or (B, h, w) predicted heatmap (sigmoid-clamped).
    gt_boxes_x1y1wh: (B, 4) normalized (x1, y1, w, h) search boxes (converted to xyxy, clamped to [0, 1]).
    gt_heatmap: (B, h, w) or (B, h, w, 1) Gaussian labels.
    total = focal * w_focal + giou * w_giou + l1 * w_l1 (1, 2, 5).
    metrics: total, focal, giou, l1, iou (mean IoU, 0 for the whole batch in the flipped-box case).
    """
    wts = dict(LOSS_WEIGHTS)
    if weights is not None:
        wts.update(weights)
    pred = jnp.asarray(pred_boxes_cxcywh, jnp.float32).reshape(-1, 4)
    pred_xyxy = cxcywh_to_xyxy(pred)
    gt_xyxy = jnp.clip(xywh_to_xyxy(jnp.asarray(gt_boxes_x1y1wh, jnp.float32).reshape(-1, 4)), 0.0, 1.0)
    giou_loss, l1, mean_iou = giou_l1_losses(pred_xyxy, gt_xyxy)
    score = jnp.asarray(score_map, jnp.float32)
    if score.ndim == 4:
        score = score[..., 0]
    hm = jnp.asarray(gt_heatmap, jnp.float32)
    if hm.ndim == 4:
        hm = hm[..., 0]
    focal = focal_loss(score, hm)
    total = wts["focal"] * focal + wts["giou"] * giou_loss + wts["l1"] * l1
    metrics = {"total": total, "focal": focal, "giou": giou_loss, "l1": l1, "iou": mean_iou}
    return total, metrics
