"""Reports: score result files of any tracker, plots (PNG), markdown/CSV tables, metrics.json.

All scores are percentages. Plots use matplotlib's object API with the Agg canvas (no display,
no global backend switch).

``score_results`` reads ``<results_dir>/<seq>.txt`` for every benchmark sequence and writes to
``out_dir``: ``metrics.json``, ``success_plot.png``, ``precision_plot.png``,
``norm_precision_plot.png``, ``results.md`` and ``results.csv`` (per-sequence rows + overall).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Mapping, Sequence as SequenceT

import numpy as np

from grm_jax.evaluate import metrics as M
from grm_jax.evaluate.benchmarks import Sequence
from grm_jax.evaluate.results import _atomic_write_bytes, read_results, read_times

__all__ = [
    "plot_success",
    "plot_precision",
    "write_metrics_json",
    "markdown_table",
    "write_markdown_table",
    "write_csv_table",
    "image_size_wh",
    "score_results",
]

SUMMARY_KEYS = ("auc", "precision", "norm_precision", "op50", "op75")
GOT10K_KEYS = ("ao", "sr50", "sr75")


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------

def _save_figure(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _curve_plot(curves: Mapping[str, np.ndarray], x: np.ndarray, scores: Mapping[str, float], path,
                title: str, xlabel: str, ylabel: str, xlim) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot(1, 1, 1)
    order = sorted(curves, key=lambda k: -float(scores.get(k, 0.0)))
    for name in order:
        ax.plot(x, np.asarray(curves[name], np.float64), linewidth=2, label=f"{name} [{scores.get(name, float('nan')):.1f}]")
    ax.set_xlim(*xlim)
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, linestyle=":")
    ax.legend(loc="lower left" if "Success" in title else "lower right", fontsize=9)
    return _save_figure(fig, Path(path))


def plot_success(curves: Mapping[str, np.ndarray], path, title: str = "Success plot",
                 thresholds: np.ndarray = M.OVERLAP_THRESHOLDS) -> Path:
    """Success plot PNG. curves: tracker name -> success curve in % on ``thresholds`` (default 21
    values 0:0.05:1); the legend shows each curve's AUC (its mean)."""
    scores = {k: float(np.mean(v)) for k, v in curves.items()}
    return _curve_plot(curves, thresholds, scores, path, title, "Overlap threshold", "Success rate [%]", (0, 1))


def plot_precision(curves: Mapping[str, np.ndarray], path, title: str = "Precision plot",
                   normalized: bool = False) -> Path:
    """Precision plot PNG. curves: tracker -> precision curve in % on 0..50 px (normalized: 0..0.5);
    the legend shows the value at 20 px (normalized: 0.20)."""
    x = M.NORM_CENTER_THRESHOLDS if normalized else M.CENTER_THRESHOLDS
    scores = {k: float(np.asarray(v)[20]) for k, v in curves.items()}
    xlabel = "Normalized location error threshold" if normalized else "Location error threshold [pixels]"
    return _curve_plot(curves, x, scores, path, title, xlabel, "Distance precision [%]", (x[0], x[-1]))


# ----------------------------------------------------------------------------------------------
# Tables and JSON
# ----------------------------------------------------------------------------------------------

def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def write_metrics_json(metrics: Mapping, path) -> Path:
    """Write ``metrics`` as indented JSON (numpy arrays -> lists, nan/inf -> null), atomically."""
    text = json.dumps(_jsonable(metrics), indent=2, sort_keys=False)
    _atomic_write_bytes(Path(path), (text + "\n").encode())
    return Path(path)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if not math.isfinite(float(v)) else f"{float(v):.2f}"
    return str(v)


def markdown_table(rows: SequenceT[Mapping], columns: SequenceT[str]) -> str:
    """Markdown table text; floats with 2 decimals."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_markdown_table(rows: SequenceT[Mapping], columns: SequenceT[str], path, title: str | None = None) -> Path:
    """Write :func:`markdown_table` (optionally under a ``# title``) to ``path``."""
    text = (f"# {title}\n\n" if title else "") + markdown_table(rows, columns)
    _atomic_write_bytes(Path(path), text.encode())
    return Path(path)


def write_csv_table(rows: SequenceT[Mapping], columns: SequenceT[str], path) -> Path:
    """Write rows as CSV with a header line (full float precision)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([r.get(c, "") for c in columns])
    _atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

def image_size_wh(frame_path) -> tuple[int, int]:
    """(W, H) of an image file (decoded with OpenCV)."""
    import cv2

    im = cv2.imread(str(frame_path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise ValueError(f"cannot read image: {frame_path}")
    return int(im.shape[1]), int(im.shape[0])


def _is_got10k(seqs: SequenceT[Sequence]) -> bool:
    return all(str(s.dataset).startswith("got10k") for s in seqs)


def score_results(benchmark_sequences: SequenceT[Sequence], results_dir, out_dir, tracker_name: str,
                  denominator: str | None = None, skip_missing: bool = False, plots: bool = True,
                  strict_invalid: bool = False) -> dict:
    """Score the result files of any tracker on a benchmark and write the report to ``out_dir``.

    benchmark_sequences: output of ``load_benchmark`` (ground truth must be public: GOT-10k test
    and TrackingNet are scored by their servers). results_dir: holds ``<seq>.txt`` files (comma,
    tab or space separated x1, y1, w, h per frame) and optionally ``<seq>_time.txt``.
    denominator: 'valid' or 'all' (default: 'all' for AVisT, else 'valid'; see metrics).
    skip_missing: skip sequences without a result file instead of raising.
    strict_invalid: see ``metrics.sequence_errors`` (default False = pytracking's conventions).
    Returns the dict written to ``out_dir/metrics.json``: percentages {"auc", "precision",
    "norm_precision", "op50", "op75"} (+ {"ao", "sr50", "sr75"} for GOT-10k), "fps" (nan without
    time files), "curves", "per_sequence", "tracker", "benchmark", "num_sequences", "denominator".
    """
    seqs = list(benchmark_sequences)
    if not seqs:
        raise ValueError("score_results: no sequences given")
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results folder does not exist: {results_dir}")
    bench = str(seqs[0].dataset)
    if denominator is None:
        denominator = "all" if bench == "avist" else "valid"
    got = _is_got10k(seqs)

    per_seq_eval, got_ious, all_times, speeds, missing = [], {}, [], {}, []
    for s in seqs:
        path = results_dir / f"{s.name}.txt"
        if not path.is_file():
            if skip_missing:
                missing.append(s.name)
                continue
            raise ValueError(f"missing result file for sequence {s.name!r}: {path}")
        gt = np.asarray(s.ground_truth, np.float64)
        if gt.shape[0] > 1 and np.isnan(gt[1:]).all():
            raise ValueError(f"sequence {s.name!r} ({bench}): ground truth is not public; "
                             f"use the benchmark's evaluation server")
        pred = read_results(path)
        per_seq_eval.append(M.evaluate_sequence(pred, gt, visible=s.visible, name=s.name, dataset=bench,
                                                denominator=denominator, strict_invalid=strict_invalid))
        if got:
            got_ious[s.name] = M.got10k_sequence_ious(pred, gt, image_size_wh(s.frames[0]), cover=s.cover,
                                                      name=s.name)
        tpath = results_dir / f"{s.name}_time.txt"
        if tpath.is_file():
            t = read_times(tpath)
            all_times.append(t)
            speeds[s.name] = M.speed_fps(t)
    if not per_seq_eval:
        raise ValueError(f"no result files found in {results_dir}")

    agg = M.aggregate(per_seq_eval)
    out: dict = {"tracker": tracker_name, "benchmark": bench, "num_sequences": agg["num_sequences"],
                 "denominator": denominator, "strict_invalid": bool(strict_invalid)}
    for k in SUMMARY_KEYS:
        out[k] = agg[k]
    out["avg_overlap"] = agg["avg_overlap"]
    per = {k: dict(v) for k, v in agg["per_sequence"].items()}
    curves = {"success": agg["success_curve"], "precision": agg["precision_curve"],
              "norm_precision": agg["norm_precision_curve"]}
    if got:
        g = M.got10k_metrics(got_ious)
        for k in GOT10K_KEYS:
            out[k] = g[k]
        curves["got10k_success"] = g["success_curve"]
        for name, v in g["per_sequence"].items():
            per[name].update({f"got10k_{k}": v[k] for k in GOT10K_KEYS})
    out["fps"] = M.speed_fps(np.concatenate(all_times)) if all_times else float("nan")
    for name, v in speeds.items():
        per[name]["fps"] = v
    out["missing_sequences"] = missing
    out["curves"] = curves
    out["per_sequence"] = per

    out_dir.mkdir(parents=True, exist_ok=True)
    write_metrics_json(out, out_dir / "metrics.json")
    if plots:
        plot_success({tracker_name: curves["success"]}, out_dir / "success_plot.png",
                     title=f"Success plot ({bench})")
        plot_precision({tracker_name: curves["precision"]}, out_dir / "precision_plot.png",
                       title=f"Precision plot ({bench})")
        plot_precision({tracker_name: curves["norm_precision"]}, out_dir / "norm_precision_plot.png",
                       title=f"Normalized precision plot ({bench})", normalized=True)
    cols = ["sequence", *SUMMARY_KEYS] + (["got10k_" + k for k in GOT10K_KEYS] if got else [])
    rows = [{"sequence": n, **v} for n, v in per.items()]
    overall = {"sequence": "ALL", **{k: out[k] for k in SUMMARY_KEYS}}
    if got:
        overall.update({f"got10k_{k}": out[k] for k in GOT10K_KEYS})
    write_markdown_table(rows + [overall], cols, out_dir / "results.md", title=f"{tracker_name} on {bench}")
    write_csv_table(rows + [overall], cols, out_dir / "results.csv")
    return out
