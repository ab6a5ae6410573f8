"""``--mode=track``: one video (a file or a folder of frames) tracked from an init box.

Outputs in the workdir, all replaced together at the end of a successful run (a failed or
interrupted run leaves the previous ones untouched; outputs this run does not produce are removed,
so the folder always holds one run):

* ``boxes.txt``: one line per frame, ``x,y,w,h`` (comma-separated floats, 4 decimals, pixels,
  (x, y) = top-left corner); line 1 is the init box.
* ``tracked.mp4``: the frames with the box (H.264 where possible, :mod:`grm_jax.track.video`);
  with ``show_division`` also the search region and the token-division panel.
* ``division.json`` (``show_division`` only): ``{"layers": [...], "frame_index": [1, ...],
  "ea_fraction": [[...], ...]}``, per tracked frame the share of search tokens in E_A of each
  drawn dividing block (0-based block indices, frame 0 has none).
* ``summary.json``: what was tracked and how (frames, codec, speed, warnings).
"""
from __future__ import annotations

import json
import pathlib
import time
import warnings
from typing import Iterable, Sequence

import numpy as np

from grm_jax.io_utils import AtomicFiles, ensure_writable_dir

__all__ = ["OUTPUT_FILES", "parse_box", "run_track"]

OUTPUT_FILES = ("boxes.txt", "tracked.mp4", "division.json", "summary.json")


def parse_box(text) -> np.ndarray:
    """'x,y,w,h' (or 4 numbers) -> (4,) float64 (checked by ``grm_jax.track.tracker.validate_box``)."""
    from grm_jax.errors import DataError  # noqa: PLC0415

    if isinstance(text, str):
        parts = [p for p in text.replace(" ", ",").split(",") if p]
    else:
        parts = list(text)
    if len(parts) != 4:
        raise DataError(f"--init_box: expected 4 numbers x,y,w,h, got {text!r}")
    try:
        return np.asarray([float(p) for p in parts], np.float64)
    except ValueError:
        raise DataError(f"--init_box: cannot parse numbers from {text!r}") from None


def division_rows(divide_layers: Sequence[int], chosen: Iterable | None) -> tuple[list[int], list[int]]:
    """(rows into Tracker.last_decisions, chosen 0-based block indices) for ``--overlay_layers``."""
    from grm_jax.errors import ConfigError  # noqa: PLC0415

    divide_layers = list(divide_layers)
    if not divide_layers:
        raise ConfigError("--show_division: this model has no dividing blocks")
    if chosen is None or len(list(chosen)) == 0:
        return list(range(len(divide_layers))), divide_layers
    layers = []
    for v in chosen:
        try:
            layers.append(int(v))
        except (TypeError, ValueError):
            raise ConfigError(f"--overlay_layers: {v!r} is not an integer block index") from None
    bad = [c for c in layers if c not in divide_layers]
    if bad:
        raise ConfigError(f"--overlay_layers {bad}: not dividing blocks of this model; valid: {divide_layers}")
    return [divide_layers.index(c) for c in layers], layers


def _progress_bar(total: int | None, show: bool | None):
    """tqdm over frames (None = only when stderr is a terminal, so logs stay clean)."""
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc="track", unit="frame", dynamic_ncols=True, mininterval=0.5, leave=False,
                disable=None if show is None else not show)


def run_track(run, checkpoint, video, init_box, workdir, threshold: float | None = None,
              show_division: bool = False, overlay_layers=None, model_and_variables=None,
              write_video: bool = True, codec: str | None = None, progress: bool | None = None) -> dict:
    """Tracks ``video`` from ``init_box`` ('x,y,w,h' in pixels of the first frame) into ``workdir``.

    run: the RunConfig (its ``track`` section merged with the model's own track settings, see
    grm_jax.track_settings; threshold: ``threshold``, else ``track.threshold``, else 0 = argmax). overlay_layers: 0-based dividing blocks drawn with
    ``show_division`` (default all). codec: see :class:`grm_jax.track.video.VideoWriter`.
    progress: tqdm bar (None = only on a terminal).

    Everything that can be checked is checked before the model is loaded: the init box, the
    workdir (WorkdirError when not writable), the video (DataError when missing or unreadable),
    the init box against the first frame. Returns the summary dict, plus 'boxes' (N, 4) float64
    and, with show_division, 'ea_fractions' (N, L) (row 0 NaN) and 'overlay_layers'.
    """
    from grm_jax.track import video as vid  # noqa: PLC0415
    from grm_jax.track.frames import FrameSource, VideoEndedEarlyWarning  # noqa: PLC0415
    from grm_jax.track.tracker import validate_box  # noqa: PLC0415

    box = validate_box(parse_box(init_box), "init box")
    out = ensure_writable_dir(workdir)
    settings = _settings(run, checkpoint, threshold)
    threshold = settings.threshold
    with FrameSource(video) as source:  # releases a video file however the run ends
        frames = iter(source)
        first = next(frames)
        box = validate_box(box, "init box", image_hw=first.shape[:2])
        model, variables = model_and_variables or _load_model(checkpoint)
        tracker = _make_tracker(model, variables, settings)
        rows, layers = (division_rows(tracker.divide_layers, overlay_layers)
                        if show_division else ([], []))
        with AtomicFiles() as files, warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoEndedEarlyWarning)  # reported in the summary instead
            writer = (vid.VideoWriter(files.path(out / "tracked.mp4", keep_extension=True), source.fps or 30.0, codec)
                      if write_video else None)
            boxes, fractions, times = _track_frames(tracker, first, frames, box, writer, rows, layers, source,
                                                    progress)
            summary = _summary(source, video, box, threshold, boxes, times, writer, layers)
            written = _write_outputs(files, out, boxes, fractions, layers, summary)
    for name in set(OUTPUT_FILES) - written:  # left by an earlier run with other options
        (out / name).unlink(missing_ok=True)
    print(_summary_line(summary, out))
    result = dict(summary, boxes=boxes, boxes_path=str(out / "boxes.txt"),
                  video_path=str(out / "tracked.mp4") if writer is not None else None)
    if show_division:
        result.update(ea_fractions=np.asarray(fractions), overlay_layers=layers)
    return result


def _load_model(checkpoint):
    from grm_jax.checkpoint import load_model  # noqa: PLC0415  (jax import only when needed)

    return load_model(checkpoint)


def _settings(run, checkpoint, threshold):
    """The resolved settings (grm_jax.track_settings): no benchmark, so the default threshold is
    the run config's ``track.threshold``, else 0 = argmax."""
    from grm_jax.run_config import RunConfig  # noqa: PLC0415
    from grm_jax.track_settings import resolve_for_checkpoint  # noqa: PLC0415

    return resolve_for_checkpoint(run if run is not None else RunConfig(), checkpoint, None, threshold)


def _make_tracker(model, variables, settings):
    from grm_jax.track.tracker import Tracker  # noqa: PLC0415

    return Tracker(model, variables, settings.track, settings.threshold, dtype=settings.dtype,
                   attention=settings.attention)


def _track_frames(tracker, first, frames, box, writer, rows, layers, source, progress):
    """The tracking loop -> (boxes (N, 4), E_A fractions per frame (N, L), per-frame seconds).
    Closes ``writer`` (the video is complete only when this returns)."""
    try:
        return _tracking_loop(tracker, first, frames, box, writer, rows, layers, source, progress)
    finally:
        if writer is not None:
            writer.close()


def _write_outputs(files, out: pathlib.Path, boxes, fractions, layers, summary: dict) -> set[str]:
    """Adds boxes.txt, division.json (when ``layers``) and summary.json to ``files`` and commits
    them with the video -> the names written."""
    files.write_text(out / "boxes.txt", _format_boxes(boxes))
    if layers:
        files.write_text(out / "division.json", json.dumps(
            {"layers": list(layers), "frame_index": list(range(1, len(boxes))),
             "ea_fraction": np.asarray(fractions)[1:].round(4).tolist()}) + "\n")
    files.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return {p.name for p in files.commit()}


def _tracking_loop(tracker, first, frames, box, writer, rows, layers, source, progress):
    from grm_jax.track import video as vid  # noqa: PLC0415

    show_division = bool(layers)
    tracker.initialize(first, box)
    boxes, fractions, times = [box.copy()], [np.full(len(rows), np.nan)], []
    if writer is not None:
        dec = np.zeros((len(rows), tracker.model_config.num_search_tokens), bool) if show_division else None
        writer.write(vid.render_frame(first, box, 0, decisions=dec, layers=layers))
    with _progress_bar(source.expected, progress) as bar:
        bar.update(1)
        for i, frame in enumerate(frames, start=1):
            t0 = time.perf_counter()
            b = tracker.track(frame)
            times.append(time.perf_counter() - t0)
            boxes.append(b)
            dec = tracker.last_decisions[rows] if show_division else None
            fractions.append(dec.mean(axis=1) if show_division else np.full(0, np.nan))
            if writer is not None:
                writer.write(vid.render_frame(frame, b, i, search_box_xywh=tracker.last_search_box,
                                              search_crop=tracker.last_search_crop, decisions=dec, layers=layers,
                                              search_factor=tracker.params.search_factor))
            bar.update(1)
            if i % 10 == 0:
                bar.set_postfix_str(f"tracker {1.0 / np.median(times[-50:]):.1f} frames/s", refresh=False)
    return np.asarray(boxes, np.float64), fractions, times


def _format_boxes(boxes: np.ndarray) -> str:
    from grm_jax.evaluate.results import format_boxes  # noqa: PLC0415

    return format_boxes(boxes, fmt="float", delimiter=",")


def _summary(source, video, box, threshold, boxes, times, writer, layers) -> dict:
    median = float(np.median(times)) if times else float("nan")
    summary = {
        "video": str(video),
        "init_box": [float(v) for v in box],
        "threshold": threshold,
        "frames": int(len(boxes)),
        "frames_expected": source.expected,
        "video_ended_early": bool(source.ended_early),
        "fps": 1.0 / median if times else None,
        "codec": writer.codec if writer is not None else None,
        "codec_description": writer.codec_description if writer is not None else None,
        "overlay_layers": list(layers) or None,
    }
    return summary


def _summary_line(summary: dict, out: pathlib.Path) -> str:
    fps = summary["fps"]
    line = (f"tracked {summary['frames']} frames"
            + (f" ({fps:.1f} frames/s median)" if fps else "") + f": {out / 'boxes.txt'}")
    if summary["codec"]:
        line += f", {out / 'tracked.mp4'} ({summary['codec_description']})"
    if summary["video_ended_early"]:
        line += (f"\nwarning: the video ended after {summary['frames']} of the {summary['frames_expected']} "
                 f"frames its container lists (damaged file?)")
    return line
