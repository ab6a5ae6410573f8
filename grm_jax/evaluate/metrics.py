"""Tracking metrics (docs/PARITY.md §9): pytracking-style OPE analysis and the GOT-10k toolkit metrics.

Boxes are (N, 4) float arrays (x1, y1, w, h) in pixels, one row per frame; integer (truncated)
or float predictions are both accepted. Everything here is plain numpy; results are dicts of
Python floats / numpy arrays.

pytracking analysis (what the paper's tables use), per sequence:
* zero-size predictions (w == 0 or h == 0) are replaced by the previous prediction (only where
  the GT row has no NaN), then the first prediction is replaced by the ground truth;
* overlap = pixel-inclusive IoU (br = tl + wh - 1), centre = tl + (wh - 1)/2;
* valid frames: GT w > 0 and h > 0 (and visible, where visibility is given). Invalid frames get
  overlap -1, centre error +inf (dataset 'uav': -1) and normalized centre error -1. With the
  'all' denominator the -1 counts as a hit of the normalized precision exactly as in pytracking;
  with the 'valid' denominator only valid frames are counted, so no score exceeds 100% (GRM's
  fork counted the -1 hits over the valid frames: 0,0,0,0 ground-truth rows then gave NP 500%);
  for dataset 'lasot' frames with the target not visible get +inf centre errors instead
  (pytracking's LaSOT branch); ``strict_invalid=True`` gives invalid frames +inf errors (never a
  hit, also with the 'all' denominator);
* success(t) = #(overlap > t) / D for t in 0:0.05:1 (21 values), precision(t) = #(err <= t) / D
  for t = 0..50 px, normalized precision for t = 0..0.50 step 0.01; D = number of valid frames
  (``denominator='valid'``, GRM/OSTrack analysis) or sequence length (``'all'``, AVisT/upstream);
* AUC = mean of the success curve; P = precision at 20 px; NP = normalized precision at 0.20;
  OP50 / OP75 = success at 0.5 / 0.75. Dataset scores are means over sequences, in percent.
* LaSOT is published with two denominators (:data:`LASOT_PROTOCOLS`): 'grm' (the valid frames,
  GRM's and OSTrack's analysis code) and 'official' (all frames: the LaSOT toolkit's
  eval_tracker.m and upstream pytracking).

GOT-10k toolkit (what its server computes): first frame excluded, only frames with cover > 0,
continuous IoU with both boxes clipped to the image, AO / SR pooled over all counted frames of
all sequences (and repetitions), success curve on linspace(0, 1, 101).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from grm_jax.errors import DataError, MissingFileError
from grm_jax.boxes import center_xywh, iou_xywh

__all__ = [
    "OVERLAP_THRESHOLDS",
    "CENTER_THRESHOLDS",
    "NORM_CENTER_THRESHOLDS",
    "GOT10K_THRESHOLDS",
    "sequence_errors",
    "sequence_curves",
    "evaluate_sequence",
    "aggregate",
    "got10k_clipped_iou",
    "got10k_sequence_ious",
    "got10k_metrics",
    "speed_fps",
    "LASOT_PROTOCOLS",
    "lasot_protocol_denominator",
]

# 21 thresholds 0, 0.05, ..., 1.0 (same float64 values as torch.arange(0, 1.05, 0.05)).
OVERLAP_THRESHOLDS = np.arange(0.0, 1.0 + 0.05, 0.05, dtype=np.float64)
CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64)  # pixels
NORM_CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0
GOT10K_THRESHOLDS = np.linspace(0, 1, 101)

_IDX_OP50 = 10  # OVERLAP_THRESHOLDS[10] == 0.5
_IDX_OP75 = 15  # OVERLAP_THRESHOLDS[15] == 0.75
_IDX_P20 = 20  # CENTER_THRESHOLDS[20] == 20 px
_IDX_NP20 = 20  # NORM_CENTER_THRESHOLDS[20] == 0.20
_DENOMINATORS = ("valid", "all")

# LaSOT protocol -> (denominator, what it means). 'grm' is the default.
LASOT_PROTOCOLS = {
    "grm": ("valid", "success and precision of a sequence divided by its valid frames (target visible, "
                     "non-empty box), as in GRM's and OSTrack's analysis code"),
    "official": ("all", "success and precision of a sequence divided by all its frames, as in the LaSOT "
                        "toolkit (eval_tracker.m) and upstream pytracking"),
}


def lasot_protocol_denominator(protocol: str) -> str:
    """'grm' -> 'valid', 'official' -> 'all' (ValueError naming the choices otherwise)."""
    if protocol not in LASOT_PROTOCOLS:
        raise ValueError(f"LaSOT protocol must be one of {tuple(LASOT_PROTOCOLS)}, got {protocol!r}")
    return LASOT_PROTOCOLS[protocol][0]


def _boxes(a, what: str, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"sequence {name!r}: {what} must have shape (N, 4), got {np.shape(a)}")
    return arr


def sequence_errors(pred_xywh, gt_xywh, visible=None, name: str = "sequence", dataset: str | None = None,
                    strict_invalid: bool = False) -> dict:
    """Per-frame errors of one sequence (pytracking ``calc_seq_err_robust`` semantics).

    pred_xywh, gt_xywh: (N, 4) (x1, y1, w, h) pixels; gt rows may be NaN (unknown).
    visible: optional (N,) bool/0-1 target visibility (None = always visible).
    dataset: only 'uav'/'uav123' (invalid centre error -1) and 'lasot' (invisible frames get
    +inf centre errors) change anything.
    strict_invalid: False (default) reproduces pytracking, where an invalid frame's normalized centre
    error is -1 (and the UAV centre error -1), which COUNTS as a precision hit (with the 'valid'
    denominator a score can then exceed 100%). True gives invalid frames +inf errors (never a hit).
    Returns {"overlap", "center_error", "norm_center_error": (N,) float64, "valid": (N,) bool,
    "pred_xywh": (N, 4) the predictions after the zero-size and first-frame replacements}.
    Raises ValueError (naming the sequence) on a length mismatch, NaN or negative-size predictions.
    """
    pred = _boxes(pred_xywh, "prediction", name).copy()
    gt = _boxes(gt_xywh, "ground truth", name)
    if pred.shape[0] != gt.shape[0]:
        raise DataError(
            f"sequence {name!r}: prediction has {pred.shape[0]} frames but ground truth has {gt.shape[0]}"
        )
    if pred.shape[0] == 0:
        raise DataError(f"sequence {name!r}: no frames")
    if np.isnan(pred).any():
        raise DataError(f"sequence {name!r}: NaN in predicted boxes")
    if (pred[:, 2:] < 0).any():
        raise DataError(f"sequence {name!r}: negative predicted width/height")
    gt_known = ~np.isnan(gt).any(axis=1)
    for i in range(1, pred.shape[0]):
        if (pred[i, 2:] == 0.0).any() and gt_known[i]:
            pred[i] = pred[i - 1]
    pred[0] = gt[0]

    with np.errstate(invalid="ignore"):
        valid = (gt[:, 2] > 0.0) & (gt[:, 3] > 0.0)
    if visible is not None:
        vis = np.asarray(visible).astype(bool).reshape(-1)
        if vis.shape[0] != gt.shape[0]:
            raise DataError(f"sequence {name!r}: visibility has {vis.shape[0]} entries, ground truth {gt.shape[0]}")
        valid = valid & vis
    else:
        vis = np.ones(gt.shape[0], dtype=bool)

    with np.errstate(invalid="ignore", divide="ignore"):
        pc, gc = center_xywh(pred), center_xywh(gt)
        center_error = np.sqrt(((pc - gc) ** 2).sum(axis=1))
        norm_center_error = np.sqrt(((pc / gt[:, 2:] - gc / gt[:, 2:]) ** 2).sum(axis=1))
        overlap = np.asarray(iou_xywh(pred, gt, pixel_inclusive=True), dtype=np.float64)

    ds = (dataset or "").lower()
    center_error[~valid] = -1.0 if (ds in ("uav", "uav123") and not strict_invalid) else np.inf
    norm_center_error[~valid] = np.inf if strict_invalid else -1.0
    overlap[~valid] = -1.0
    if ds == "lasot":
        center_error[~vis] = np.inf
        norm_center_error[~vis] = np.inf
    if np.isnan(overlap).any():
        raise DataError(f"sequence {name!r}: NaN in computed overlaps")
    return {"overlap": overlap, "center_error": center_error, "norm_center_error": norm_center_error,
            "valid": valid, "pred_xywh": pred}


def sequence_curves(errors: Mapping, denominator: str = "valid", name: str = "sequence") -> dict:
    """Success / precision curves of one sequence from :func:`sequence_errors` output.

    denominator: 'valid' (divide by the number of valid frames; GRM/OSTrack analysis) or 'all'
    (divide by the sequence length; AVisT and upstream pytracking).
    Returns fractions in [0, 1]: {"success": (21,), "precision": (51,), "norm_precision": (51,),
    "auc", "precision_20", "norm_precision_20", "op50", "op75", "avg_overlap" (mean IoU over valid
    frames), "num_frames", "num_valid"}.
    """
    if denominator not in _DENOMINATORS:
        raise ValueError(f"denominator must be one of {_DENOMINATORS}, got {denominator!r}")
    ov = np.asarray(errors["overlap"], dtype=np.float64)
    ce = np.asarray(errors["center_error"], dtype=np.float64)
    ne = np.asarray(errors["norm_center_error"], dtype=np.float64)
    valid = np.asarray(errors["valid"], dtype=bool)
    n_valid = int(valid.sum())
    denom = n_valid if denominator == "valid" else int(ov.shape[0])
    if denom <= 0:
        raise DataError(f"sequence {name!r}: no valid frames to evaluate (denominator={denominator!r})")
    counted = valid if denominator == "valid" else np.ones_like(valid)  # hits outside D never count
    success = (ov[counted, None] > OVERLAP_THRESHOLDS[None, :]).sum(axis=0) / denom
    precision = (ce[counted, None] <= CENTER_THRESHOLDS[None, :]).sum(axis=0) / denom
    norm_precision = (ne[counted, None] <= NORM_CENTER_THRESHOLDS[None, :]).sum(axis=0) / denom
    return {
        "success": success,
        "precision": precision,
        "norm_precision": norm_precision,
        "auc": float(success.mean()),
        "precision_20": float(precision[_IDX_P20]),
        "norm_precision_20": float(norm_precision[_IDX_NP20]),
        "op50": float(success[_IDX_OP50]),
        "op75": float(success[_IDX_OP75]),
        "avg_overlap": float(ov[valid].mean()) if n_valid else float("nan"),
        "num_frames": int(ov.shape[0]),
        "num_valid": n_valid,
    }


def evaluate_sequence(pred_xywh, gt_xywh, visible=None, name: str = "sequence", dataset: str | None = None,
                      denominator: str = "valid", strict_invalid: bool = False) -> dict:
    """:func:`sequence_errors` followed by :func:`sequence_curves`; returns the curves dict plus
    "name" and the per-frame "overlap" array."""
    err = sequence_errors(pred_xywh, gt_xywh, visible=visible, name=name, dataset=dataset,
                          strict_invalid=strict_invalid)
    out = sequence_curves(err, denominator=denominator, name=name)
    out["name"] = name
    out["overlap"] = err["overlap"]
    return out


def aggregate(per_sequence) -> dict:
    """Average per-sequence results (outputs of :func:`evaluate_sequence`) into dataset scores.

    per_sequence: list of dicts (each with a "name") or a mapping name -> dict.
    Returns percentages: {"auc", "precision", "norm_precision", "op50", "op75", "avg_overlap",
    "success_curve" (21,), "precision_curve" (51,), "norm_precision_curve" (51,),
    "num_sequences", "per_sequence": {name: {"auc", "precision", "norm_precision", "op50", "op75",
    "avg_overlap", "num_frames", "num_valid"}}}. Curves are means over sequences (x100); the
    scalars are read off the mean curves (AUC = mean of the mean success curve).
    """
    if isinstance(per_sequence, Mapping):
        items = [(str(k), v) for k, v in per_sequence.items()]
    else:
        items = [(str(v.get("name", f"seq{i}")), v) for i, v in enumerate(per_sequence)]
    if not items:
        raise ValueError("aggregate: no sequences given")
    names = [k for k, _ in items]
    if len(set(names)) != len(names):
        raise ValueError("aggregate: duplicate sequence names")
    succ = np.stack([np.asarray(v["success"], np.float64) for _, v in items]).mean(axis=0) * 100.0
    prec = np.stack([np.asarray(v["precision"], np.float64) for _, v in items]).mean(axis=0) * 100.0
    nprec = np.stack([np.asarray(v["norm_precision"], np.float64) for _, v in items]).mean(axis=0) * 100.0
    ao = [v.get("avg_overlap", np.nan) for _, v in items]
    per = {}
    for k, v in items:
        per[k] = {
            "auc": 100.0 * float(np.mean(v["success"])),
            "precision": 100.0 * float(v["precision"][_IDX_P20]),
            "norm_precision": 100.0 * float(v["norm_precision"][_IDX_NP20]),
            "op50": 100.0 * float(v["success"][_IDX_OP50]),
            "op75": 100.0 * float(v["success"][_IDX_OP75]),
            "avg_overlap": 100.0 * float(v.get("avg_overlap", np.nan)),
            "num_frames": int(v.get("num_frames", len(v.get("overlap", [])))),
            "num_valid": int(v.get("num_valid", 0)),
        }
    return {
        "auc": float(succ.mean()),
        "precision": float(prec[_IDX_P20]),
        "norm_precision": float(nprec[_IDX_NP20]),
        "op50": float(succ[_IDX_OP50]),
        "op75": float(succ[_IDX_OP75]),
        "avg_overlap": 100.0 * float(np.nanmean(ao)) if not np.all(np.isnan(ao)) else float("nan"),
        "success_curve": succ,
        "precision_curve": prec,
        "norm_precision_curve": nprec,
        "num_sequences": len(items),
        "per_sequence": per,
    }


# ----------------------------------------------------------------------------------------------
# GOT-10k toolkit
# ----------------------------------------------------------------------------------------------

def _clip_to_image(b: np.ndarray, W: float, H: float) -> np.ndarray:
    b = b.copy()
    b[:, 0] = np.clip(b[:, 0], 0, W)
    b[:, 1] = np.clip(b[:, 1], 0, H)
    b[:, 2] = np.clip(b[:, 2], 0, W - b[:, 0])
    b[:, 3] = np.clip(b[:, 3], 0, H - b[:, 1])
    return b


def got10k_clipped_iou(pred_xywh, gt_xywh, image_wh) -> np.ndarray:
    """(N,) continuous IoU with both boxes first clipped to the image (GOT-10k toolkit ``rect_iou``).

    image_wh: (W, H). Clipping: x1 in [0, W], y1 in [0, H], w in [0, W - x1], h in [0, H - y1].
    IoU = inter / (union + float64 eps), clipped to [0, 1] (no "+1").
    """
    W, H = float(image_wh[0]), float(image_wh[1])
    p = _clip_to_image(np.asarray(pred_xywh, np.float64).reshape(-1, 4), W, H)
    g = _clip_to_image(np.asarray(gt_xywh, np.float64).reshape(-1, 4), W, H)
    x1 = np.maximum(p[:, 0], g[:, 0])
    y1 = np.maximum(p[:, 1], g[:, 1])
    x2 = np.minimum(p[:, 0] + p[:, 2], g[:, 0] + g[:, 2])
    y2 = np.minimum(p[:, 1] + p[:, 3], g[:, 1] + g[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = p[:, 2] * p[:, 3] + g[:, 2] * g[:, 3] - inter
    return np.clip(inter / (union + np.finfo(np.float64).eps), 0.0, 1.0)


def got10k_sequence_ious(pred_xywh, gt_xywh, image_wh, cover=None, name: str = "sequence") -> np.ndarray:
    """IoUs of the frames the GOT-10k toolkit counts for one sequence.

    pred_xywh: (N, 4) or (R, N, 4) for R repetitions; gt_xywh: (N, 4); image_wh: (W, H);
    cover: optional (N,) cover labels (0 = fully occluded / absent). The first frame is dropped,
    then only frames with cover > 0 are kept. Returns a flat float64 array (R * kept frames).
    """
    gt = _boxes(gt_xywh, "ground truth", name)
    pred = np.asarray(pred_xywh, dtype=np.float64)
    if pred.ndim == 2:
        pred = pred[None]
    if pred.ndim != 3 or pred.shape[-1] != 4:
        raise DataError(f"sequence {name!r}: prediction must be (N, 4) or (R, N, 4), got {pred.shape}")
    if pred.shape[1] != gt.shape[0]:
        raise DataError(
            f"sequence {name!r}: prediction has {pred.shape[1]} frames but ground truth has {gt.shape[0]}"
        )
    keep = np.ones(gt.shape[0], dtype=bool)
    keep[0] = False
    if cover is not None:
        cov = np.asarray(cover).reshape(-1)
        if cov.shape[0] != gt.shape[0]:
            raise DataError(f"sequence {name!r}: cover has {cov.shape[0]} entries, ground truth {gt.shape[0]}")
        keep &= cov > 0
    return np.concatenate([got10k_clipped_iou(p[keep], gt[keep], image_wh) for p in pred])


def got10k_metrics(ious) -> dict:
    """AO / SR from IoUs pooled over all counted frames (frame-weighted, NOT a mean of means).

    ious: one flat array, or a list / mapping of per-sequence arrays (they are concatenated).
    Returns percentages {"ao", "sr50", "sr75", "success_curve" (101,) on GOT10K_THRESHOLDS,
    "num_frames"} and, when given per sequence, "per_sequence": {name: {"ao", "sr50", "sr75"}}.
    SR_t = fraction of frames with IoU > t (strict).
    """
    per = None
    if isinstance(ious, Mapping):
        per = {str(k): np.asarray(v, np.float64).reshape(-1) for k, v in ious.items()}
        pooled = np.concatenate(list(per.values())) if per else np.zeros(0)
    elif isinstance(ious, np.ndarray):
        pooled = ious.astype(np.float64).reshape(-1)
    else:
        parts = [np.asarray(v, np.float64).reshape(-1) for v in ious]
        pooled = np.concatenate(parts) if parts else np.zeros(0)
    if pooled.size == 0:
        raise ValueError("got10k_metrics: no frames to evaluate")

    def _scores(x):
        return {"ao": 100.0 * float(np.mean(x)), "sr50": 100.0 * float(np.mean(x > 0.5)),
                "sr75": 100.0 * float(np.mean(x > 0.75))}

    out = _scores(pooled)
    out["success_curve"] = 100.0 * np.mean(pooled[:, None] > GOT10K_THRESHOLDS[None, :], axis=0)
    out["num_frames"] = int(pooled.size)
    if per is not None:
        out["per_sequence"] = {k: (_scores(v) if v.size else {"ao": float("nan"), "sr50": float("nan"),
                                                               "sr75": float("nan")}) for k, v in per.items()}
    return out


def speed_fps(times: Iterable[float] | np.ndarray) -> float:
    """Speed = mean over frames of 1/t for t > 0 (NaN ignored); nan when no such frame."""
    t = np.asarray(list(times) if not isinstance(times, np.ndarray) else times, dtype=np.float64).reshape(-1)
    t = t[~np.isnan(t)]
    t = t[t > 0]
    if t.size == 0:
        return float("nan")
    return float(np.mean(1.0 / t))
