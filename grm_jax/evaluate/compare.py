"""Scoring the result folders of one or several trackers on a benchmark: one report.

``--results`` takes ``DIR`` (one tracker, named ``--tracker_name`` or after the folder) or
``NAME=DIR,NAME=DIR,...``. Every tracker is scored on the sequences ALL of them have a result
file for, so the numbers compare like with like; sequences left out are announced. The report
(:func:`grm_jax.evaluate.report.write_report`) has one success / precision / normalized-precision
plot with every tracker, one table with a row per tracker and, on LaSOT when the user's attribute
files are found (:mod:`grm_jax.evaluate.attributes`), the per-attribute AUC table and bar charts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence as SequenceT

from grm_jax.errors import DataError, MissingFileError
from grm_jax.evaluate import attributes as A
from grm_jax.evaluate import report

__all__ = ["compare_trackers", "console_table", "parse_results_spec"]


def parse_results_spec(spec, tracker_name: str | None = None) -> dict[str, Path]:
    """'DIR' or 'NAME=DIR,NAME=DIR,...' (or a mapping / list of folders) -> {name: folder}.

    A plain folder is named ``tracker_name`` or the folder's name. MissingFileError names a
    folder that does not exist; DataError a name given twice or an empty spec."""
    if isinstance(spec, Mapping):
        items = [(str(k), Path(v)) for k, v in spec.items()]
    else:
        parts = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else map(str, spec)) if p.strip()]
        items = []
        for part in parts:
            name, sep, folder = part.partition("=")
            if sep and name and "/" not in name and "\\" not in name:
                items.append((name.strip(), Path(folder.strip())))
            else:
                items.append((None, Path(part)))
        if len(items) == 1 and items[0][0] is None:
            items = [(tracker_name or items[0][1].resolve().name, items[0][1])]
        items = [(name or folder.resolve().name, folder) for name, folder in items]
    if not items:
        raise DataError(f"--results={spec!r}: no results folder given", hint="--results=DIR or NAME=DIR,NAME=DIR")
    out: dict[str, Path] = {}
    for name, folder in items:
        if name in out:
            raise DataError(f"--results: tracker name {name!r} is given twice", hint="use NAME=DIR,NAME=DIR")
        if not folder.is_dir():
            raise MissingFileError(f"results folder of {name!r} does not exist: {folder}")
        out[name] = folder
    return out


def _common_sequences(seqs: SequenceT, results: Mapping[str, Path]) -> tuple[list, dict[str, list[str]]]:
    """(sequences every tracker has a result file for, {tracker: benchmark sequences it lacks})."""
    lacking = {name: [s.name for s in seqs if not (folder / f"{s.name}.txt").is_file()]
               for name, folder in results.items()}
    left_out = set().union(*lacking.values()) if lacking else set()
    return [s for s in seqs if s.name not in left_out], lacking


def compare_trackers(seqs: SequenceT, results: Mapping[str, Path], out_dir, attribute_flags=None,
                     plots: bool = True, lasot_protocol: str = "grm", coverage: Mapping | None = None) -> dict:
    """Scores every tracker of ``results`` ({name: folder}) on the benchmark sequences ``seqs``
    and writes one report to ``out_dir``.

    attribute_flags: {sequence: (14,) bool} LaSOT attribute flags (None: no attribute report).
    lasot_protocol: 'grm' | 'official' (``metrics.LASOT_PROTOCOLS``). coverage: how ``seqs`` were
    chosen from the benchmark ({"benchmark_sequences", "selected", "missing"}, see
    ``report.write_report``; None: not stated).
    Returns {"trackers": [metrics per tracker, in the order given], "attributes": table rows or
    None, "left_out": {tracker: sequences without a result file}, "report": results.md path}.
    DataError when no sequence has results from every tracker.
    """
    seqs = list(seqs)
    common, lacking = _common_sequences(seqs, results)
    for name, names in lacking.items():
        if names:
            print(f"warning: {name}: {len(names)} of {len(seqs)} sequences have no result file in "
                  f"{results[name]} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    if not common:
        raise DataError(f"no sequence of {seqs[0].dataset if seqs else 'the benchmark'} has a result file from "
                        f"every tracker ({', '.join(f'{n}={d}' for n, d in results.items())})")
    if len(common) < len(seqs):
        print(f"scoring the {len(common)} of {len(seqs)} sequences with results from every tracker")
    coverage = dict(coverage or {})
    coverage["left_out"] = len(seqs) - len(common)
    coverage["scored"] = len(common)
    trackers = []
    for name, folder in results.items():
        metrics = report.score_tracker(common, folder, name, lasot_protocol=lasot_protocol)
        metrics["missing_sequences"] = lacking[name]
        trackers.append(metrics)
    table = None
    if attribute_flags:
        flags = {s.name: attribute_flags[s.name] for s in common}
        per_seq = {m["tracker"]: {s: v["auc"] for s, v in m["per_sequence"].items()} for m in trackers}
        table = A.attribute_table(per_seq, flags)
    path = report.write_report(trackers, out_dir, attributes=table, plots=plots, coverage=coverage)
    return {"trackers": trackers, "attributes": table, "left_out": lacking, "report": path}


def console_table(trackers: SequenceT[Mapping], attributes: SequenceT[Mapping] | None = None) -> str:
    """The tracker table (and the attribute table) as markdown text for the console."""
    rows, cols = report.tracker_table(trackers)
    text = report.markdown_table(rows, [k for k, _ in cols], [h for _, h in cols])
    if attributes:
        names = [m["tracker"] for m in trackers]
        text += "\nAUC per attribute:\n" + report.markdown_table(attributes, ["attribute", "sequences", *names])
    return text
