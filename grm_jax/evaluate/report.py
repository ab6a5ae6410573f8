"""Reports: score the result files of any tracker; plots (PNG, :mod:`grm_jax.evaluate.plots`),
markdown / CSV tables, metrics.json.

All scores are percentages.

:func:`score_tracker` reads ``<results_dir>/<seq>.txt`` (and ``<seq>_time.txt``) of every
benchmark sequence and returns the metrics; :func:`write_report` writes the report of one
tracker or of several compared trackers to ``out_dir``:

* ``metrics.json``: one tracker: its metrics; several: ``{"trackers": {name: metrics}, ...}``;
* ``success_plot.png``, ``precision_plot.png``, ``norm_precision_plot.png``: every tracker in its
  own fixed style, the legend (outside the axes) sorted by score and showing it (AUC, precision
  at 20 px, normalized precision at 0.20), the title naming the benchmark, the sequence count
  and, on LaSOT, the protocol;
* ``results.md`` (the sequences scored out of the benchmark's, the LaSOT protocol, the table, the
  plots linked, speed definitions, per-attribute table) and ``results.csv``: one row per
  tracker; a value that is not known (a tracker without time files has no speed) shows as "–";
  ``per_sequence_<tracker>.csv``: per-sequence scores;
* with LaSOT attribute flags (:mod:`grm_jax.evaluate.attributes`): ``attributes.csv`` and one bar
  chart ``attributes_<tracker>.png`` per tracker.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Mapping, Sequence as SequenceT

import numpy as np

from grm_jax.datasets import DATASETS, Sequence
from grm_jax.errors import DataError, MissingFileError
from grm_jax.evaluate import metrics as M
from grm_jax.evaluate import speed as SP
from grm_jax.evaluate.plots import plot_attribute_bars, plot_precision, plot_success, tracker_styles
from grm_jax.evaluate.results import read_results, read_times
from grm_jax.io_utils import atomic_write_bytes

__all__ = ["plot_success", "plot_precision", "plot_attribute_bars", "write_metrics_json", "markdown_table",
           "write_csv_table", "image_size_wh", "score_tracker", "tracker_table",
           "write_report"]

SUMMARY_KEYS = ("auc", "precision", "norm_precision", "op50", "op75")
GOT10K_KEYS = ("ao", "sr50", "sr75")
PLOT_FILES = {"success": "success_plot.png", "precision": "precision_plot.png",
              "norm_precision": "norm_precision_plot.png"}
# Every file write_report may write (glob patterns), e.g. for --overwrite to delete.
REPORT_FILE_PATTERNS = ("metrics.json", "results.md", "results.csv", "attributes.csv", *PLOT_FILES.values(),
                        "attributes_*.png", "per_sequence_*.csv")
# The tracker table: (key, header). Speeds: see grm_jax.evaluate.speed.
TABLE_COLUMNS = (("tracker", "tracker"), ("num_sequences", "sequences"), ("auc", "AUC"),
                 ("precision", "P (20 px)"), ("norm_precision", "NP (0.20)"), ("op50", "OP50"), ("op75", "OP75"))
GOT10K_COLUMNS = (("ao", "AO"), ("sr50", "SR0.5"), ("sr75", "SR0.75"))
SPEED_COLUMNS = (("toolkit_fps", "toolkit fps (mean 1/t)"), ("frames_per_s", "frames/s (wall, excl. compile)"))


def safe_name(name: str) -> str:
    """A tracker name usable in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "tracker"


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
    atomic_write_bytes(Path(path), (text + "\n").encode())
    return Path(path)


MISSING = "\u2013"  # an en dash: a value that is not known (None, nan), e.g. the speed of result files without times


def _fmt(v) -> str:
    if v is None:
        return MISSING
    if isinstance(v, (float, np.floating)):
        return MISSING if not math.isfinite(float(v)) else f"{float(v):.2f}"
    return str(v)


def markdown_table(rows: SequenceT[Mapping], columns: SequenceT[str], headers: SequenceT[str] | None = None) -> str:
    """Markdown table text; floats with 2 decimals, None and nan as MISSING ("–"). headers: column
    titles (default: the keys)."""
    lines = ["| " + " | ".join(headers or columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv_table(rows: SequenceT[Mapping], columns: SequenceT[str], path) -> Path:
    """Write rows as CSV with a header line (full float precision; None as empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c, "") for c in columns])
    atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

def image_size_wh(frame_path) -> tuple[int, int]:
    """(W, H) of an image file (decoded with OpenCV)."""
    import cv2  # noqa: PLC0415

    im = cv2.imread(str(frame_path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise DataError(f"cannot read image: {frame_path}")
    return int(im.shape[1]), int(im.shape[0])


def _is_got10k(seqs: SequenceT[Sequence]) -> bool:
    """True when every sequence is from a benchmark scored with GOT-10k's AO / SR (registry)."""
    return all(getattr(DATASETS.get(str(s.dataset)), "scoring", None) == "got10k" for s in seqs)


def _read_prediction(path: Path) -> np.ndarray:
    pred = read_results(path)
    bad = np.flatnonzero(np.isnan(pred).any(axis=1))
    if bad.size:
        raise DataError(f"{path}: box {bad[0] + 1} has a NaN coordinate; a result file needs a box for every frame")
    return pred


def score_tracker(benchmark_sequences: SequenceT[Sequence], results_dir, tracker_name: str,
                  denominator: str | None = None, skip_missing: bool = False, strict_invalid: bool = False,
                  lasot_protocol: str = "grm") -> dict:
    """Scores the result files of any tracker on a benchmark (nothing is written).

    benchmark_sequences: output of ``load_benchmark`` (ground truth must be public: GOT-10k test
    and TrackingNet are scored by their servers). results_dir: holds ``<seq>.txt`` files (comma,
    tab or space separated x1, y1, w, h per frame), optionally ``<seq>_time.txt`` and, for
    grm-jax evaluations, ``timing.json`` (see :mod:`grm_jax.evaluate.speed`).
    denominator: 'valid' or 'all' (default: the benchmark's registry row, ``DatasetSpec.denominator``:
    'all' for AVisT, LaSOT's ``lasot_protocol`` ('grm' = 'valid', 'official' = 'all';
    ``metrics.LASOT_PROTOCOLS``), else 'valid').
    skip_missing: skip sequences without a result file instead of raising.
    strict_invalid: see ``metrics.sequence_errors`` (default False = pytracking's conventions).
    Returns percentages {"auc", "precision", "norm_precision", "op50", "op75"} (+ {"ao", "sr50",
    "sr75"} for GOT-10k), "fps" (the toolkit-convention speed, nan without time files), "speed"
    (both speeds, labelled), "curves", "per_sequence", "tracker", "benchmark", "num_sequences",
    "denominator", "protocol" (LaSOT: 'grm' or 'official', else None), "missing_sequences".
    """
    seqs = list(benchmark_sequences)
    if not seqs:
        raise ValueError("score_tracker: no sequences given")
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise MissingFileError(f"results folder does not exist: {results_dir}")
    bench = str(seqs[0].dataset)
    protocol_denominator = M.lasot_protocol_denominator(lasot_protocol)
    convention = getattr(DATASETS.get(bench), "denominator", "valid")  # the registry row's
    if denominator is None:
        denominator = protocol_denominator if convention == "lasot_protocol" else convention
    protocol = None
    if convention == "lasot_protocol":
        protocol = next(k for k, (d, _) in M.LASOT_PROTOCOLS.items() if d == denominator)
    got = _is_got10k(seqs)

    per_seq_eval, got_ious, all_times, speeds, missing = [], {}, [], {}, []
    for s in seqs:
        path = results_dir / f"{s.name}.txt"
        if not path.is_file():
            if skip_missing:
                missing.append(s.name)
                continue
            raise MissingFileError(f"missing result file for sequence {s.name!r}: {path}")
        gt = np.asarray(s.ground_truth, np.float64)
        if gt.shape[0] > 1 and np.isnan(gt[1:]).all():
            raise DataError(f"sequence {s.name!r} ({bench}): ground truth is not public; "
                             f"use the benchmark's evaluation server")
        pred = _read_prediction(path)
        per_seq_eval.append(M.evaluate_sequence(pred, gt, visible=s.visible, name=s.name, dataset=bench,
                                                denominator=denominator, strict_invalid=strict_invalid))
        if got:
            got_ious[s.name] = M.got10k_sequence_ious(pred, gt, image_size_wh(s.frames[0]), cover=s.cover,
                                                      name=s.name)
        tpath = results_dir / f"{s.name}_time.txt"
        if tpath.is_file():
            t = read_times(tpath, num_boxes=pred.shape[0], box_path=path)
            all_times.append(t)
            speeds[s.name] = M.speed_fps(t)
    if not per_seq_eval:
        raise DataError(f"no result files found in {results_dir}")
    _warn_invalid_ground_truth(seqs)

    agg = M.aggregate(per_seq_eval)
    out: dict = {"tracker": tracker_name, "benchmark": bench, "num_sequences": agg["num_sequences"],
                 "denominator": denominator, "protocol": protocol, "strict_invalid": bool(strict_invalid)}
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
    out["speed"] = SP.speed_fields(out["fps"], SP.read_timing(results_dir))
    for name, v in speeds.items():
        per[name]["fps"] = v
    out["missing_sequences"] = missing
    out["curves"] = curves
    out["per_sequence"] = per
    return out


def _warn_invalid_ground_truth(seqs) -> None:
    """One warning line when ground-truth rows after the first frame are invalid (w or h <= 0, or
    NaN) where the target is not marked invisible: such frames are not scored (see metrics)."""
    counts = {}
    for s in seqs:
        gt = np.asarray(s.ground_truth, np.float64)[1:]
        with np.errstate(invalid="ignore"):
            bad = ~((gt[:, 2] > 0) & (gt[:, 3] > 0))
        if s.visible is not None:
            bad &= np.asarray(s.visible, bool)[1:]
        if bad.any():
            counts[s.name] = int(bad.sum())
    if counts:
        listed = ", ".join(f"{n} ({c})" for n, c in list(counts.items())[:5])
        print(f"warning: {sum(counts.values())} ground-truth row(s) of {len(counts)} sequence(s) after the first "
              f"frame have no box (width or height <= 0, or NaN): those frames are not scored (invalid frames, as in "
              f"pytracking): {listed}{', ...' if len(counts) > 5 else ''}")


# ----------------------------------------------------------------------------------------------
# Writing reports
# ----------------------------------------------------------------------------------------------

def _columns(trackers: SequenceT[Mapping], base, got_cols) -> list[tuple[str, str]]:
    got = all(k in m for m in trackers for k in GOT10K_KEYS)
    return [*base, *(got_cols if got else ())]


def tracker_table(trackers: SequenceT[Mapping]) -> tuple[list[dict], list[tuple[str, str]]]:
    """(rows sorted by AUC, best first; (key, header) columns) of the one-row-per-tracker table."""
    rows = []
    for m in trackers:
        row = {k: m.get(k) for k, _ in TABLE_COLUMNS}
        row.update({k: m[k] for k in GOT10K_KEYS if k in m})
        row.update({k: (m.get("speed") or {}).get(k) for k, _ in SPEED_COLUMNS})
        rows.append(row)
    rows.sort(key=lambda r: -float(r["auc"]))
    return rows, _columns(trackers, TABLE_COLUMNS, GOT10K_COLUMNS) + list(SPEED_COLUMNS)


def _title(trackers: SequenceT[Mapping]) -> str:
    counts = sorted({int(m["num_sequences"]) for m in trackers})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    protocol = trackers[0].get("protocol")
    return f"{trackers[0]['benchmark']} ({n} sequences{f', protocol {protocol}' if protocol else ''})"


def _write_plots(trackers: SequenceT[Mapping], out_dir: Path, title: str, styles) -> None:
    plot_success({m["tracker"]: m["curves"]["success"] for m in trackers}, out_dir / PLOT_FILES["success"],
                 title=f"Success plot: {title}", styles=styles)
    plot_precision({m["tracker"]: m["curves"]["precision"] for m in trackers}, out_dir / PLOT_FILES["precision"],
                   title=f"Precision plot: {title}", styles=styles)
    plot_precision({m["tracker"]: m["curves"]["norm_precision"] for m in trackers},
                   out_dir / PLOT_FILES["norm_precision"], title=f"Normalized precision plot: {title}", normalized=True,
                   styles=styles)


def _scope_text(trackers: SequenceT[Mapping], coverage: Mapping | None) -> str:
    """The results.md lines saying which sequences were scored and, on LaSOT, with which protocol."""
    coverage, n, parts = coverage or {}, int(trackers[0]["num_sequences"]), []
    if coverage.get("selected"):
        parts.append({"sequences": "the ones named by --sequences", "present": "the ones present in the dataset root",
                      "all": "all of them"}[coverage["selected"]])
    if coverage.get("missing"):
        parts.append(f"{len(coverage['missing'])} missing from the root")
    if coverage.get("left_out"):
        parts.append(f"{coverage['left_out']} left out because not every tracker has results for them")
    text = ""
    if parts:
        total = coverage.get("benchmark_sequences")
        of_total = "" if total is None else f" of the benchmark's {int(total)}"
        text += f"Sequences scored: {n}{of_total} ({'; '.join(parts)}).\n"
    protocol = trackers[0].get("protocol")
    if protocol:
        text += f"LaSOT protocol: {protocol}: {M.LASOT_PROTOCOLS[protocol][1]}.\n"
    return text + ("\n" if text else "")


def _attribute_section(trackers, attributes: SequenceT[Mapping], out_dir: Path, title: str, plots: bool,
                       styles) -> str:
    names = [m["tracker"] for m in trackers]
    write_csv_table(attributes, ["abbrev", "attribute", "sequences", *names], out_dir / "attributes.csv")
    text = "\n## Per-attribute AUC\n\n" + markdown_table(attributes, ["attribute", "abbrev", "sequences", *names])
    for m in trackers:
        png = f"attributes_{safe_name(m['tracker'])}.png"
        if plots:
            bars = [(f"{r['attribute']} ({r['sequences']})", float(r[m["tracker"]])) for r in attributes]
            plot_attribute_bars(bars, out_dir / png, f"{m['tracker']}: AUC per attribute, {title}", overall=m["auc"],
                                style=styles[m["tracker"]])
        text += f"\n![{m['tracker']} per attribute]({png})\n"
    return text


def write_report(trackers: SequenceT[Mapping], out_dir, attributes: SequenceT[Mapping] | None = None,
                 plots: bool = True, coverage: Mapping | None = None) -> Path:
    """Writes the report of one or several scored trackers (outputs of :func:`score_tracker`, same
    benchmark) to ``out_dir`` (see module doc); attributes: rows of
    :func:`grm_jax.evaluate.attributes.attribute_table`. coverage: which of the benchmark's
    sequences were scored, {"benchmark_sequences": int, "selected": 'all' | 'sequences' |
    'present', "missing": [names not in the root]} (also written to metrics.json). Every chart
    draws tracker k in style k of :func:`grm_jax.evaluate.plots.tracker_styles` (the order given).
    Returns the path of results.md."""
    trackers = list(trackers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = _title(trackers)
    styles = tracker_styles([m["tracker"] for m in trackers])
    payload = dict(trackers[0]) if len(trackers) == 1 else {
        "benchmark": trackers[0]["benchmark"], "protocol": trackers[0].get("protocol"),
        "trackers": {m["tracker"]: m for m in trackers}}
    if coverage:
        payload["coverage"] = dict(coverage)
    if attributes:
        payload["attributes"] = list(attributes)
    write_metrics_json(payload, out_dir / "metrics.json")
    if plots:
        _write_plots(trackers, out_dir, title, styles)
    rows, cols = tracker_table(trackers)
    write_csv_table(rows, [k for k, _ in cols], out_dir / "results.csv")
    text = f"# {title}\n\n" + _scope_text(trackers, coverage)
    text += markdown_table(rows, [k for k, _ in cols], [h for _, h in cols])
    text += ("\ntoolkit fps: mean over frames of 1/t from <seq>_time.txt, first frames included (GOT-10k / "
             "pytracking convention); frames/s: frames tracked / (tracking wall time - compile time); "
             f"{MISSING}: not known (e.g. result files without <seq>_time.txt).\n")
    if plots:
        text += "".join(f"\n![{key.replace('_', ' ')} plot]({name})\n" for key, name in PLOT_FILES.items())
    if attributes:
        text += _attribute_section(trackers, attributes, out_dir, title, plots, styles)
    text += "\n## Per-sequence scores\n\n"
    for m in trackers:
        per_cols = ["sequence", *SUMMARY_KEYS, *[f"got10k_{k}" for k in GOT10K_KEYS if k in m], "fps", "num_frames"]
        csv_name = f"per_sequence_{safe_name(m['tracker'])}.csv"
        write_csv_table([{"sequence": n, **v} for n, v in m["per_sequence"].items()], per_cols, out_dir / csv_name)
        text += f"* {m['tracker']}: [{csv_name}]({csv_name})\n"
    atomic_write_bytes(out_dir / "results.md", text.encode())
    return out_dir / "results.md"
