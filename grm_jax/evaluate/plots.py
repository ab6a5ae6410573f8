"""Report plots (PNG): success / precision curves and per-attribute bar charts.

Every chart of one report draws a tracker in the same style: :func:`tracker_styles` gives each
tracker, in the order the trackers were given (``--results=GRM=...,OSTrack=...``), one colour and
one line style, never its rank, so GRM keeps its colour from the success plot to the attribute
charts. Legends sit outside the axes, to the right, where they cannot cover a curve; the curve
legend is sorted by score and shows it. Each PNG carries its title in the ``Title`` text chunk.

matplotlib's object API with the Agg canvas (no display, no global backend switch).
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, Sequence as SequenceT

import numpy as np

from grm_jax.evaluate import metrics as M
from grm_jax.io_utils import atomic_write_bytes

__all__ = ["TrackerStyle", "tracker_styles", "plot_success", "plot_precision", "plot_attribute_bars"]

# matplotlib's "tab10" colours, then the same colours dashed, dash-dotted, dotted: 40 distinct styles.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
_LINESTYLES = ("-", "--", "-.", ":")
# The legend's anchor: outside the axes, to the right of their top corner.
_LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}


class TrackerStyle(tuple):
    """(colour, linestyle) of one tracker."""

    @property
    def color(self) -> str:
        return self[0]

    @property
    def linestyle(self) -> str:
        return self[1]


def tracker_styles(names: SequenceT[str]) -> dict[str, TrackerStyle]:
    """{tracker: (colour, linestyle)} by position in ``names``: the k-th tracker gets colour
    k mod 10 and line style k // 10 (mod 4), whatever its scores."""
    return {str(n): TrackerStyle((_COLOURS[k % len(_COLOURS)], _LINESTYLES[(k // len(_COLOURS)) % len(_LINESTYLES)]))
            for k, n in enumerate(names)}


def _save_figure(fig, path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Title": title})
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _curve_plot(curves: Mapping[str, np.ndarray], x: np.ndarray, scores: Mapping[str, float], path, title: str,
                xlabel: str, ylabel: str, xlim, score_label: str, styles: Mapping[str, TrackerStyle] | None) -> Path:
    from matplotlib.figure import Figure  # noqa: PLC0415

    styles = styles or tracker_styles(list(curves))
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    for name in sorted(curves, key=lambda k: -float(scores.get(k, 0.0))):
        style = styles[name]
        ax.plot(x, np.asarray(curves[name], np.float64), linewidth=2, color=style.color, linestyle=style.linestyle,
                label=f"{name} [{score_label} {scores.get(name, float('nan')):.1f}]")
    ax.set_xlim(*xlim)
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, linestyle=":")
    ax.legend(fontsize=9, **_LEGEND)
    return _save_figure(fig, Path(path), title)


def plot_success(curves: Mapping[str, np.ndarray], path, title: str = "Success plot",
                 thresholds: np.ndarray = M.OVERLAP_THRESHOLDS,
                 styles: Mapping[str, TrackerStyle] | None = None) -> Path:
    """Success plot PNG. curves: tracker name -> success curve in % on ``thresholds`` (default 21
    values 0:0.05:1); the legend, sorted by AUC, shows each curve's AUC (its mean). styles: from
    :func:`tracker_styles` (default: by the order of ``curves``)."""
    scores = {k: float(np.mean(v)) for k, v in curves.items()}
    return _curve_plot(curves, thresholds, scores, path, title, "Overlap threshold", "Success rate [%]", (0, 1),
                       "AUC", styles)


def plot_precision(curves: Mapping[str, np.ndarray], path, title: str = "Precision plot",
                   normalized: bool = False, styles: Mapping[str, TrackerStyle] | None = None) -> Path:
    """Precision plot PNG. curves: tracker -> precision curve in % on 0..50 px (normalized: 0..0.5);
    the legend, sorted by it, shows the value at 20 px (normalized: 0.20)."""
    x = M.NORM_CENTER_THRESHOLDS if normalized else M.CENTER_THRESHOLDS
    scores = {k: float(np.asarray(v)[20]) for k, v in curves.items()}
    xlabel = "Normalized location error threshold" if normalized else "Location error threshold [pixels]"
    return _curve_plot(curves, x, scores, path, title, xlabel, "Distance precision [%]", (x[0], x[-1]),
                       "NP@0.2" if normalized else "P@20", styles)


def plot_attribute_bars(values: SequenceT[tuple[str, float]], path, title: str, overall: float | None = None,
                        style: TrackerStyle | None = None) -> Path:
    """Horizontal bar chart PNG: (label, AUC %) per bar, the value written beside it (n/a when
    nan); ``overall`` (the tracker's AUC on all sequences) as a dashed line; bars in the
    tracker's colour (``style``)."""
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(7.0, 0.38 * len(values) + 1.4))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(values))[::-1]
    heights = [0.0 if math.isnan(v) else v for _, v in values]
    ax.barh(y, heights, color=(style or tracker_styles(["_"])["_"]).color)
    for yi, (_, v) in zip(y, values):
        ax.text((0.0 if math.isnan(v) else v) + 0.8, yi, "n/a" if math.isnan(v) else f"{v:.1f}", va="center",
                fontsize=8)
    if overall is not None and not math.isnan(overall):
        ax.axvline(overall, color="k", linestyle="--", linewidth=1, label=f"all sequences [AUC {overall:.1f}]")
        ax.legend(fontsize=8, **_LEGEND)
    ax.set_yticks(y, [label for label, _ in values], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("AUC [%]")
    ax.set_title(title)
    ax.grid(True, axis="x", linestyle=":")
    return _save_figure(fig, Path(path), title)
