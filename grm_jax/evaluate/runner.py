"""The evaluate / track / score modes of launch.py.

evaluate: load a model directory, read a benchmark, track every sequence (B sequences per device
  call, ``config.eval.batch_sequences``), write ``<seq>.txt`` and ``<seq>_time.txt`` atomically into
  the workdir as each sequence finishes (sequences already complete are skipped on a re-run), then
  score them (metrics.json, results.md/csv, PNG plots) or, for GOT-10k test / TrackingNet, build
  the server submission zip.
track: one video (file or frame folder) from an init box -> ``boxes.txt`` (x,y,w,h per frame, row 0 =
  the init box) and ``tracked.mp4`` (optionally with the token-division overlay).
score: score any folder of ``<seq>.txt`` result files on a benchmark.

Benchmark roots come from ``config.data.roots.<name>`` (got10k_val/got10k_test -> roots.got10k).
The 'folder' benchmark (``root/<seq>/*.jpg`` + ``groundtruth.txt``) takes its root from
``config.data.roots.folder`` when that field exists, or inline as ``--dataset=folder:/path/to/root``.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
import time
from typing import Callable, Iterable, Sequence as SequenceT

import numpy as np

from grm_jax.evaluate import benchmarks as bm
from grm_jax.evaluate import report, results as res

__all__ = ["parse_box", "resolve_benchmark", "resolve_threshold", "run_evaluate", "run_score", "run_track"]

_ALIASES = {"trackingnet_test": "trackingnet", "lasot_test": "lasot", "uav": "uav123", "nfs30": "nfs",
            "got10k": "got10k_test"}
_SERVER_SCORED = ("got10k_test", "trackingnet")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _cfg_get(node, key, default=None):
    if node is None:
        return default
    try:
        value = node.get(key, default)
    except AttributeError:
        value = getattr(node, key, default)
    return default if value is None else value


def resolve_benchmark(config, dataset: str) -> tuple[str, pathlib.Path]:
    """'lasot' / 'got10k_test' / 'folder:/path' ... -> (benchmark key, root folder).

    ValueError for an unknown name (listing valid ones) or an unset root (naming the config field)."""
    name = str(dataset).strip()
    inline_root = None
    if ":" in name and name.split(":", 1)[0].lower() == "folder":
        name, inline_root = name.split(":", 1)
    key = _ALIASES.get(name.lower(), name.lower())
    valid = bm.list_benchmarks()
    if key not in valid:
        raise ValueError(f"unknown dataset {dataset!r}; valid names: {', '.join(valid)} "
                         f"(and 'folder:/path/to/sequences')")
    if inline_root:
        return key, pathlib.Path(inline_root)
    field = "got10k" if key.startswith("got10k") else key
    roots = _cfg_get(_cfg_get(config, "data"), "roots")
    root = _cfg_get(roots, field)
    if root is None and key == "folder":
        root = _cfg_get(_cfg_get(config, "eval"), "folder_root")
    if root is None:
        hint = " or --dataset=folder:/path/to/sequences" if key == "folder" else ""
        raise ValueError(f"dataset {key!r}: no root folder; set --config.data.roots.{field}=/path{hint}")
    return key, pathlib.Path(str(root))


def resolve_threshold(config, key: str, threshold: float | None) -> float:
    """Explicit threshold, else config.track.thresholds.<key>, else the benchmark's official value,
    else config.track.thresholds.default (0 = argmax)."""
    if threshold is not None:
        return float(threshold)
    table = _cfg_get(_cfg_get(config, "track"), "thresholds")
    value = _cfg_get(table, key)
    if value is not None:
        return float(value)
    official = bm.default_threshold(key)
    if official != 0.0:
        return official
    return float(_cfg_get(table, "default", 0.0))


def parse_box(text) -> np.ndarray:
    """'x,y,w,h' (or 4 numbers) -> (4,) float64 (validated by the tracker)."""
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", ",").split(",") if p]
    else:
        parts = list(text)
    if len(parts) != 4:
        raise ValueError(f"init box: expected 4 numbers x,y,w,h, got {text!r}")
    try:
        return np.asarray([float(p) for p in parts], np.float64)
    except ValueError:
        raise ValueError(f"init box: cannot parse numbers from {text!r}") from None


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_model(checkpoint):
    from grm_jax.checkpoint import load_model  # noqa: PLC0415  (jax import only when needed)

    return load_model(checkpoint)


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, mininterval=1.0)


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------

def run_evaluate(config, checkpoint, dataset: str, workdir, threshold: float | None = None,
                 sequences: SequenceT[str] | None = None, tracker_name: str | None = None,
                 on_sequence_done: Callable[[str], None] | None = None, model_and_variables=None) -> dict:
    """Track a benchmark with a model directory and score it. Returns a summary dict.

    Result files go to ``workdir`` (``<seq>.txt``, ``<seq>_time.txt``); complete ones are reused.
    on_sequence_done(name): called after each sequence's files are written (progress hooks, tests).
    model_and_variables: optional already-loaded (model, variables) instead of loading ``checkpoint``.
    """
    from grm_jax.track.batched import BatchedTracker  # noqa: PLC0415

    key, root = resolve_benchmark(config, dataset)
    seqs = bm.load_benchmark(key, root, sequences)
    if not seqs:
        raise ValueError(f"dataset {key!r} at {root}: no sequences")
    thr = resolve_threshold(config, key, threshold)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tracker_name = tracker_name or pathlib.Path(str(checkpoint)).name or "grm"
    fmt = str(_cfg_get(_cfg_get(config, "eval"), "result_format", "int"))
    batch = int(_cfg_get(_cfg_get(config, "eval"), "batch_sequences", 8))

    todo = [s for s in seqs if not res.is_complete(workdir, s.name, num_frames=len(s), require_time=True)]
    print(f"{key}: {len(seqs)} sequences, {len(seqs) - len(todo)} already complete in {workdir}, "
          f"threshold {thr}, batch {batch}")
    if todo:
        model, variables = model_and_variables or _load_model(checkpoint)
        tracker = BatchedTracker(model, variables, _cfg_get(config, "track"), thr, batch_size=min(batch, len(todo)))
        bar = _progress(sum(len(s) for s in todo), f"{tracker_name}/{key}")
        try:
            for r in tracker.track(todo, on_frames=bar.update if bar is not None else None):
                res.write_results(workdir, r.name, r.boxes, r.times, fmt=fmt)
                if on_sequence_done is not None:
                    on_sequence_done(r.name)
        finally:
            if bar is not None:
                bar.close()

    summary = {"dataset": key, "threshold": thr, "num_sequences": len(seqs), "tracked": len(todo),
               "workdir": str(workdir)}
    names = [s.name for s in seqs]
    if key == "got10k_test":
        zip_path = res.write_got10k_submission(workdir, names, workdir / "got10k_submission",
                                               zip_path=workdir / f"{tracker_name}_got10k_test.zip", fmt=fmt)
        summary["submission"] = str(zip_path)
        print(f"GOT-10k test submission: {zip_path} (upload to the evaluation server)")
    elif key == "trackingnet":
        zip_path = res.write_trackingnet_submission(workdir, names, workdir / f"{tracker_name}_trackingnet.zip",
                                                    fmt=fmt)
        summary["submission"] = str(zip_path)
        print(f"TrackingNet submission: {zip_path} (upload to the evaluation server)")
    else:
        metrics = report.score_results(seqs, workdir, workdir, tracker_name)
        summary["metrics"] = {k: metrics.get(k) for k in (*report.SUMMARY_KEYS, *report.GOT10K_KEYS, "fps")
                              if k in metrics}
        print(_summary_line(tracker_name, key, metrics))
    return summary


def _summary_line(tracker_name: str, key: str, metrics: dict) -> str:
    parts = [f"{k}={metrics[k]:.2f}" for k in (*report.SUMMARY_KEYS, *report.GOT10K_KEYS, "fps")
             if k in metrics and isinstance(metrics[k], (int, float)) and not math.isnan(metrics[k])]
    return f"{tracker_name} on {key}: " + " ".join(parts)


# ----------------------------------------------------------------------------------------------
# track
# ----------------------------------------------------------------------------------------------

def _division_rows(divide_layers: SequenceT[int], division_layers: Iterable | None) -> tuple[list[int], list[int]]:
    """(rows into Tracker.last_decisions, chosen 0-based block indices)."""
    divide_layers = list(divide_layers)
    if not divide_layers:
        raise ValueError("--show_division: this model has no dividing blocks")
    if division_layers is None or len(list(division_layers)) == 0:
        return list(range(len(divide_layers))), divide_layers
    chosen = []
    for v in division_layers:
        try:
            chosen.append(int(v))
        except (TypeError, ValueError):
            raise ValueError(f"--division_layers: {v!r} is not an integer block index") from None
    bad = [c for c in chosen if c not in divide_layers]
    if bad:
        raise ValueError(f"--division_layers {bad}: not dividing blocks of this model; valid: {divide_layers}")
    return [divide_layers.index(c) for c in chosen], chosen


def run_track(config, checkpoint, video, init_box, workdir, threshold: float | None = None,
              show_division: bool = False, division_layers=None, model_and_variables=None,
              write_video: bool = True) -> dict:
    """Track one video from ``init_box`` ('x,y,w,h') and write ``boxes.txt`` + ``tracked.mp4``.

    Returns {'boxes': (N,4) float64, 'ea_fractions': (N, L) E_A fraction per chosen layer (row 0 NaN)
    when show_division, 'boxes_path', 'video_path', 'fps'}.
    """
    from grm_jax.track import video as vid  # noqa: PLC0415
    from grm_jax.track.tracker import Tracker, validate_box  # noqa: PLC0415

    box = validate_box(parse_box(init_box), "init box")
    if threshold is None:
        threshold = float(_cfg_get(_cfg_get(_cfg_get(config, "track"), "thresholds"), "default", 0.0))
    frames = vid.iter_frames(video)  # raises for a missing source before the model is loaded
    first = next(frames)
    model, variables = model_and_variables or _load_model(checkpoint)
    tracker = Tracker(model, variables, _cfg_get(config, "track"), threshold)
    rows, layers = _division_rows(tracker.divide_layers, division_layers) if show_division else ([], [])
    out = pathlib.Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / "tracked.mp4"
    writer = vid.VideoWriter(video_path, vid.video_fps(video)) if write_video else None
    boxes, fractions, times = [], [], []
    try:
        tracker.initialize(first, box)
        boxes.append(box.copy())
        if show_division:
            fractions.append(np.full(len(rows), np.nan))
        if writer is not None:
            dec = np.zeros((len(rows), tracker.model_config.num_search_tokens), bool) if show_division else None
            writer.write(vid.render_frame(first, box, 0, decisions=dec, layers=layers))
        for i, frame in enumerate(frames, start=1):
            t0 = time.perf_counter()
            b = tracker.track(frame)
            times.append(time.perf_counter() - t0)
            boxes.append(b)
            dec = None
            if show_division:
                dec = tracker.last_decisions[rows]
                fractions.append(dec.mean(axis=1))
            if writer is not None:
                writer.write(vid.render_frame(frame, b, i, search_box_xywh=tracker.last_search_box,
                                              search_crop=tracker.last_search_crop, decisions=dec, layers=layers,
                                              search_factor=tracker.params.search_factor))
    finally:
        if writer is not None:
            writer.close()
    boxes = np.asarray(boxes, np.float64)
    boxes_path = out / "boxes.txt"
    _atomic_write_text(boxes_path, res.format_boxes(boxes, fmt="float", delimiter=","))
    fps = float(1.0 / np.median(times)) if times else float("nan")
    result = {"boxes": boxes, "boxes_path": str(boxes_path), "video_path": str(video_path) if writer else None,
              "fps": fps}
    if show_division:
        result["ea_fractions"] = np.asarray(fractions)
        result["division_layers"] = layers
        _atomic_write_text(out / "division.json", json.dumps(
            {"layers": layers, "ea_fraction_per_frame": np.asarray(fractions)[1:].round(4).tolist()}))
    print(f"tracked {len(boxes)} frames ({fps:.1f} frames/s median): {boxes_path}"
          + (f", {video_path}" if writer else ""))
    return result


# ----------------------------------------------------------------------------------------------
# score
# ----------------------------------------------------------------------------------------------

def run_score(config, dataset: str, results, workdir, tracker_name: str | None = None) -> dict:
    """Score a folder of ``<seq>.txt`` result files on a benchmark -> metrics dict (also written to
    ``workdir/metrics.json`` with tables and plots). Sequences without a result file are skipped
    with a warning (listed under 'missing_sequences')."""
    key, root = resolve_benchmark(config, dataset)
    results = pathlib.Path(results)
    if not results.is_dir():
        raise ValueError(f"results folder does not exist: {results}")
    if key in _SERVER_SCORED:
        raise ValueError(f"dataset {key!r}: ground truth is not public; submit the results to its server")
    seqs = bm.load_benchmark(key, root)
    metrics = report.score_results(seqs, results, workdir, tracker_name or results.name, skip_missing=True)
    if metrics.get("missing_sequences"):
        print(f"warning: {len(metrics['missing_sequences'])} of {len(seqs)} sequences have no result file "
              f"in {results}; scored the rest")
    print(_summary_line(tracker_name or results.name, key, metrics))
    return metrics
