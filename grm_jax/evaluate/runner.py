"""The evaluate / track / score modes of launch.py.

evaluate: load a model directory, read a benchmark, track every sequence (B sequences per device
  call, ``run.eval.batch_sequences``), write ``<seq>.txt`` and ``<seq>_time.txt`` atomically into
  the workdir as each sequence finishes, then score them (metrics.json, results.md/csv, PNG plots,
  LaSOT per-attribute scores) or, for GOT-10k test / TrackingNet, build the server submission zip.
  ``run_manifest.json`` (:mod:`grm_jax.evaluate.manifest`) records the model and settings: a re-run
  resumes only the same run (complete sequences are skipped); other results are refused unless
  ``--overwrite`` deletes them. Unreadable frames stop the run naming the file, or with
  ``eval.on_bad_frame='skip'`` keep the previous box and are listed in summary.json. Speed is
  reported two ways (:mod:`grm_jax.evaluate.speed`).
track: one video (file or frame folder) from an init box -> ``boxes.txt``, ``tracked.mp4``,
  ``summary.json`` (and ``division.json``); implemented in :mod:`grm_jax.track.track_mode`.
score: score the result folders of one or several trackers on a benchmark (one comparison report,
  :mod:`grm_jax.evaluate.compare`).

Benchmark names and root keys are those of ``grm_jax.datasets.registry``: the root of a benchmark
is ``run.data.roots[<its root key>]`` (got10k_val/got10k_test -> roots.got10k, sample_val ->
roots.sample, which defaults to the generated data's cache folder). The 'folder' benchmark
(``root/<seq>/*.jpg`` + ``groundtruth.txt``) takes its root from ``roots.folder`` or inline as
``--dataset=folder:/path/to/root``.
"""
from __future__ import annotations

import pathlib
from typing import Callable, Sequence as SequenceT

import numpy as np

from grm_jax import datasets as ds
from grm_jax import track_settings
from grm_jax.datasets.registry import SERVER_SCORING
from grm_jax.errors import DataError, WorkdirError
from grm_jax.evaluate import attributes, compare, manifest, report, results as res, speed
from grm_jax.evaluate import metrics as metrics_lib
from grm_jax.io_utils import ensure_writable_dir
from grm_jax.run_config import RunConfig
from grm_jax.track.track_mode import parse_box, run_track  # noqa: F401  (the track mode)

__all__ = ["parse_box", "resolve_benchmark", "run_evaluate", "run_score", "run_track"]

_SERVER_SCORED = tuple(n for n, spec in ds.DATASETS.items() if spec.scoring in SERVER_SCORING)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def resolve_benchmark(run: RunConfig, dataset: str) -> tuple[str, pathlib.Path]:
    """'lasot' / 'got10k_test' / 'folder:/path' ... -> (registry name, root folder).

    The root is ``run.data.roots[<root key of the name>]`` (the generated sample data defaults
    to its cache folder); 'folder' also takes ``folder:/path`` inline. ConfigError for an unknown
    name (listing the valid ones) or an unset root (``grm_jax.datasets.require_dataset_root``)."""
    name = str(dataset).strip()
    inline_root = None
    if ":" in name and name.split(":", 1)[0].lower() == "folder":
        name, inline_root = name.split(":", 1)
    key = ds.resolve(name, "eval", where="--dataset").name
    if inline_root:
        return key, pathlib.Path(inline_root)
    also = "or --dataset=folder:/path/to/sequences" if key == "folder" else None  # the inline form above
    return key, pathlib.Path(ds.require_dataset_root(key, run.data.roots, also=also))


def _load_model(checkpoint):
    from grm_jax.checkpoint import load_model  # noqa: PLC0415  (jax import only when needed)

    return load_model(checkpoint)


# ----------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------

def run_evaluate(run: RunConfig, checkpoint, dataset: str, workdir, threshold: float | None = None,
                 sequences: SequenceT[str] | None = None, tracker_name: str | None = None, overwrite: bool = False,
                 on_sequence_done: Callable[[str], None] | None = None, model_and_variables=None,
                 max_local_devices: int | None = None, attributes_dir=None) -> dict:
    """Track a benchmark with a model directory and score it. Returns the summary (also ``summary.json``).

    Result files go to ``workdir`` (``<seq>.txt``, ``<seq>_time.txt`` and, for unreadable frames,
    ``<seq>_bad_frames.json``) beside ``run_manifest.json`` (:mod:`grm_jax.evaluate.manifest`).
    Complete sequences of the same model and settings are reused; results of other settings are
    refused (WorkdirError) unless ``overwrite`` deletes them. run.eval: batch_sequences,
    result_format, on_bad_frame ('error' stops naming the file, 'skip' carries the previous box);
    run.track: the tracking settings, merged with the model's own (:func:`grm_jax.track_settings.resolve_for_checkpoint`).
    on_sequence_done(name): called after each sequence's files are written (progress hooks, tests).
    model_and_variables: optional already-loaded (model, variables) instead of loading ``checkpoint``.
    Several processes (multi-host, see ``grm_jax.evaluate.distribute``) each track their own share
    into the shared ``workdir``; process 0 scores. max_local_devices: use only the first N local
    devices of each process (default: all). attributes_dir: LaSOT attribute files (see
    :mod:`grm_jax.evaluate.attributes`; default: looked for under the dataset root).
    """
    from grm_jax.evaluate import distribute  # noqa: PLC0415
    from grm_jax.track.batched import BatchedTracker  # noqa: PLC0415

    topo = distribute.topology(max_local_devices)  # joins the other processes before devices are used
    key, root = resolve_benchmark(run, dataset)
    seqs = ds.load_benchmark(key, root, sequences)
    if not seqs:
        raise DataError(f"dataset {key!r} at {root}: no sequences")
    _check_init_boxes(seqs)
    settings = track_settings.resolve_for_checkpoint(run, checkpoint, key, threshold, topo.local_devices[0].platform)
    thr, attention = settings.threshold, settings.attention
    workdir = ensure_writable_dir(workdir)
    with _evaluation_lock(workdir, topo.process_index):
        tracker_name = tracker_name or pathlib.Path(str(checkpoint)).name or "grm"
        fmt, batch = run.eval.result_format, run.eval.batch_sequences
        run_manifest = manifest.build_manifest(checkpoint, key, thr, settings.track, attention, fmt)
        state = manifest.prepare_workdir(workdir, run_manifest, [s.name for s in seqs], overwrite=overwrite,
                                         write=topo.process_index == 0)
        distribute.wait_for_all_processes(topo, f"grm_evaluate_manifest_{key}")  # process 0 cleared / wrote it
        if state == "overwritten":
            print(f"--overwrite: deleted the results and reports of a different run in {workdir}")

        shares = distribute.split_sequences(seqs, topo.process_count)
        mine = set(shares[topo.process_index])
        todo = [s for s in seqs if s.name in mine
                and not res.is_complete(workdir, s.name, num_frames=len(s), require_time=True)]
        print(f"{key}: {len(seqs)} sequences, process {topo.process_index}/{topo.process_count} tracks "
              f"{len(todo)} of its {len(mine)} ({len(mine) - len(todo)} already complete in {workdir}) on "
              f"{len(topo.local_devices)} device(s), threshold {thr}, batch {batch}")
        clock = None
        if todo:
            model, variables = model_and_variables or _load_model(checkpoint)
            tracker = BatchedTracker(model, variables, settings.track, thr, batch_size=min(batch, len(todo)),
                                     devices=topo.local_devices, dtype=settings.dtype, attention=attention,
                                     on_bad_frame=run.eval.on_bad_frame)
            clock = _track(tracker, todo, workdir, fmt, f"{tracker_name}/{key}", run.eval.on_bad_frame,
                           on_sequence_done)

        summary = {"dataset": key, "threshold": thr, "num_sequences": len(seqs), "tracked": len(todo),
                   "workdir": str(workdir), **distribute.summary_fields(topo, shares)}
        distribute.wait_for_all_processes(topo, f"grm_evaluate_{key}")
        if topo.process_index != 0:
            return summary  # process 0 scores and writes summary.json
        missing = [s.name for s in seqs if not res.is_complete(workdir, s.name, num_frames=len(s))]
        if missing:
            raise WorkdirError(f"{workdir}: no complete results for {len(missing)} sequence(s) after tracking: "
                               f"{', '.join(missing[:10])}", hint="re-run the same command to resume")
        if clock is not None and clock.frames_done:
            speed.record_session(workdir, clock.frames_done, clock.wall_s, clock.compile_s, processes=topo.process_count,
                                 devices=topo.devices, batch_sequences=batch)
        _report(summary, seqs, root, workdir, tracker_name, fmt, clock, run.eval.on_bad_frame, attributes_dir,
                run.eval.lasot_protocol, _coverage(key, seqs, "sequences" if sequences is not None else "all", []))
        return summary


def _report(summary: dict, seqs, root, workdir: pathlib.Path, tracker_name: str, fmt: str, clock,
            on_bad_frame: str, attributes_dir=None, lasot_protocol: str = "grm", coverage=None) -> None:
    """Process 0, after tracking: scores (or builds the server submission), prints the table,
    the speeds and the unreadable frames, and completes and writes ``summary.json``."""
    key, names = summary["dataset"], [s.name for s in seqs]
    summary["bad_frames"] = {n: rows for n in names if (rows := res.read_bad_frames(workdir, n))}
    summary["bad_frame_count"] = sum(len(rows) for rows in summary["bad_frames"].values())
    if key in _SERVER_SCORED:
        summary["submission"] = str(_submission(key, workdir, names, tracker_name, fmt))
        summary["speed"] = speed.speed_fields(_toolkit_fps(workdir, names), speed.read_timing(workdir))
    else:
        out = compare.compare_trackers(seqs, {tracker_name: workdir}, workdir,
                                       attribute_flags=_attribute_flags(key, root, names, attributes_dir),
                                       lasot_protocol=lasot_protocol, coverage=coverage)
        metrics = out["trackers"][0]
        summary["metrics"] = {k: metrics.get(k) for k in (*report.SUMMARY_KEYS, *report.GOT10K_KEYS, "fps")
                              if k in metrics}
        summary["speed"] = dict(metrics["speed"])
        _print_report(key, out)
    if clock is not None:
        summary["speed"]["this_run"] = {"frames": clock.frames_done, "wall_s": clock.wall_s,
                                        "compile_s": clock.compile_s, "frames_per_s": clock.frames_per_s()}
    print(speed.describe(summary["speed"]))
    _print_bad_frames(summary["bad_frames"], on_bad_frame)
    report.write_metrics_json(summary, workdir / manifest.SUMMARY_FILE)


def _check_init_boxes(seqs) -> None:
    """DataError naming the sequence and its folder when a first ground-truth box cannot start the
    tracker (NaN, w or h <= 0, ...), before any model is loaded."""
    import os  # noqa: PLC0415

    from grm_jax.track.tracker import validate_box  # noqa: PLC0415

    for s in seqs:
        folder = os.path.dirname(s.frames[0]) if s.frames else "?"
        validate_box(s.init_box, f"sequence {s.name!r} ({folder}), first ground-truth box")


def _evaluation_lock(workdir: pathlib.Path, process_index: int):
    """Process 0 holds ``<workdir>/evaluate.lock`` while it evaluates (a second evaluation into
    the same workdir is refused naming the first); other processes hold nothing."""
    import contextlib  # noqa: PLC0415

    from grm_jax.workdir_lock import EVALUATE_LOCK, WorkdirLock  # noqa: PLC0415

    if process_index != 0:
        return contextlib.nullcontext()
    return WorkdirLock.acquire(workdir, file_name=EVALUATE_LOCK, job="evaluation")


_BAD_FRAME_HINTS = {  # attached to the data errors raised while tracking
    "error": "if a frame is unreadable: --on_bad_frame=skip (config eval.on_bad_frame) carries the previous "
             "box over it",
    "skip": "--on_bad_frame=skip skips unreadable frames except the first frame of a sequence, which starts "
            "the tracker; repair it or leave the sequence out (--sequences)",
}


def _track(tracker, todo, workdir: pathlib.Path, fmt: str, desc: str, on_bad_frame: str,
           on_sequence_done) -> speed.TrackingClock:
    """Tracks ``todo``, writing each sequence's files as it finishes (bad frames first, the box
    file last); returns the run's clock (frames, wall and compile seconds). An unreadable frame
    raises DataError naming the file (with on_bad_frame='skip': only a first frame)."""
    clock = speed.TrackingClock(sum(len(s) for s in todo), len(todo), desc)
    with clock:
        try:
            for r in tracker.track(todo, on_frames=clock.frames):
                res.write_bad_frames(workdir, r.name, r.bad_frames)
                res.write_results(workdir, r.name, r.boxes, r.times, fmt=fmt)
                clock.sequence_done()
                if on_sequence_done is not None:
                    on_sequence_done(r.name)
        except DataError as err:  # frame readers raise DataError (MissingFileError) naming the file
            hint = "; ".join(h for h in (getattr(err, "hint", None), _BAD_FRAME_HINTS[on_bad_frame]) if h)
            raise DataError(str(err), hint=hint) from err
    return clock


def _submission(key: str, workdir: pathlib.Path, names: list[str], tracker_name: str, fmt: str) -> pathlib.Path:
    """The evaluation server's zip for GOT-10k test / TrackingNet (the registry row's ``scoring``)."""
    zip_name = workdir / f"{tracker_name}_{key}.zip"  # <tracker>_got10k_test.zip, <tracker>_trackingnet.zip
    if ds.DATASETS[key].scoring == "got10k_server":
        zip_path = res.write_got10k_submission(workdir, names, workdir / "got10k_submission", zip_path=zip_name,
                                               fmt=fmt)
    else:
        zip_path = res.write_trackingnet_submission(workdir, names, zip_name, fmt=fmt)
    print(f"{key} submission: {zip_path} (upload to the evaluation server)")
    return zip_path


def _toolkit_fps(workdir: pathlib.Path, names: list[str]) -> float:
    times = [res.read_times(workdir / f"{n}_time.txt") for n in names if (workdir / f"{n}_time.txt").is_file()]
    return metrics_lib.speed_fps(np.concatenate(times)) if times else float("nan")


def _attribute_flags(key: str, root, names: list[str], attributes_dir=None):
    """LaSOT attribute flags of ``names`` (None for other benchmarks or without attribute files)."""
    if key != "lasot":
        return None
    flags = attributes.load_lasot_attributes(root, names, attributes_dir)
    if flags is None:
        example = attributes.attribute_candidates(root, names[0], attributes_dir)
        print(f"note: no LaSOT attribute files found (e.g. {example[0]} or {example[2]}); per-attribute "
              f"scores skipped (see README, 'LaSOT attributes')")
    return flags


def _print_report(key: str, out: dict) -> None:
    print(f"\n{key}:\n" + compare.console_table(out["trackers"], out["attributes"]) + f"report: {out['report']}")


def _print_bad_frames(bad: dict, policy: str) -> None:
    if bad:
        count = sum(len(v) for v in bad.values())
        listed = ", ".join(f"{n} ({len(v)})" for n, v in list(bad.items())[:10])
        print(f"warning: {count} unreadable frame(s) in {len(bad)} sequence(s) kept the previous box "
              f"(eval.on_bad_frame={policy}): {listed}{', ...' if len(bad) > 10 else ''}; listed in summary.json")


# ----------------------------------------------------------------------------------------------
# score
# ----------------------------------------------------------------------------------------------

def _coverage(key: str, seqs, selected: str, missing: list[str]) -> dict:
    """What results.md / metrics.json say about the sequences scored (see ``report.write_report``)."""
    names = ds.benchmark_sequence_names(key)
    total = len(names) if names is not None else (len(seqs) if selected == "all" else None)
    return {"benchmark_sequences": total, "selected": selected, "missing": list(missing)}


def _score_sequences(key: str, root, sequences) -> tuple[list, dict]:
    """The sequences to score: ``sequences`` (--sequences) if given, else those of the benchmark
    present in ``root`` (one warning line when some are missing; DataError when none is there)."""
    seqs, missing = ds.load_present(key, root, sequences)
    if not seqs:
        raise DataError(f"dataset {key!r}: none of its sequences is in {root}",
                        hint=f"e.g. {missing[0]!r} is expected in {root}" if missing else None)
    if missing:
        total = len(seqs) + len(missing)
        print(f"warning: {key}: {len(missing)} of the {total} sequences are not in {root} "
              f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); scoring the {len(seqs)} present "
              f"(name them with --sequences to score a subset on purpose)")
    selected = "sequences" if sequences is not None else ("present" if missing else "all")
    return seqs, _coverage(key, seqs, selected, missing)


def run_score(run: RunConfig, dataset: str, results, workdir, tracker_name: str | None = None,
              attributes_dir=None, sequences: SequenceT[str] | None = None) -> dict:
    """Scores the result folders of any trackers on a benchmark and writes one report to ``workdir``.

    results: ``DIR``, ``NAME=DIR,NAME=DIR,...`` or {name: dir} (:mod:`grm_jax.evaluate.compare`;
    all trackers are scored on the sequences they all have results for). sequences: score only
    these (--sequences); without, the benchmark's sequences present in the dataset root are
    scored, with one warning line when some are missing. results.md and metrics.json
    (``coverage``) state how many of the benchmark's sequences were scored. LaSOT is scored with
    ``run.eval.lasot_protocol``. attributes_dir: a folder of LaSOT attribute files
    (``<seq>.txt``), besides those found in the LaSOT root (:mod:`grm_jax.evaluate.attributes`).
    Returns the metrics of the one tracker, or {"benchmark", "trackers": {name: metrics},
    "attributes"} (what ``workdir/metrics.json`` holds).
    """
    key, root = resolve_benchmark(run, dataset)
    if key in _SERVER_SCORED:
        raise DataError(f"dataset {key!r}: ground truth is not public; submit the results to its server")
    folders = compare.parse_results_spec(results, tracker_name)
    workdir = ensure_writable_dir(workdir)
    seqs, coverage = _score_sequences(key, root, sequences)
    out = compare.compare_trackers(seqs, folders, workdir,
                                   attribute_flags=_attribute_flags(key, root, [s.name for s in seqs], attributes_dir),
                                   lasot_protocol=run.eval.lasot_protocol, coverage=coverage)
    _print_report(key, out)
    if len(out["trackers"]) == 1:
        return out["trackers"][0]
    return {"benchmark": key, "trackers": {m["tracker"]: m for m in out["trackers"]}, "attributes": out["attributes"]}
