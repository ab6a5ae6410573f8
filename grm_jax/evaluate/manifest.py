"""The run manifest: which model and settings made the result files of an evaluation workdir.

``<workdir>/run_manifest.json`` is written atomically before the first sequence is tracked and
records everything the boxes depend on:

* ``checkpoint``: the sha256 of the model config (canonical JSON of ``model_config.json``) and of
  the weights: for a model directory the sha256 of its ``weights.sha256`` list (so of every
  weight file); for a training work directory, the step and the names, sizes and modification
  times of the step's weight files (a metadata digest: training checkpoints carry no checksums).
  ``path`` is informational only (a moved model directory is the same model);
* ``dataset``, ``threshold``, ``dtype``, ``attention`` (the resolved implementation),
  ``result_format``, the crop / clipping / precision settings of ``track``;
* ``code_version``: the installed grm-jax version.

A later run into the same workdir resumes only when every one of these fields is equal.
Otherwise (or when the workdir holds result files but no manifest) it is refused with
:class:`grm_jax.errors.WorkdirError` naming the differences; ``overwrite=True`` (``--overwrite``)
deletes the old results and reports first (:func:`clear_outputs`: this benchmark's result files
and the files grm-jax writes beside them, nothing else).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Iterable, Mapping

from grm_jax.errors import WorkdirError
from grm_jax.evaluate.report import REPORT_FILE_PATTERNS
from grm_jax.evaluate.results import SEQUENCE_FILE_SUFFIXES
from grm_jax.evaluate.speed import TIMING_FILE
from grm_jax.io_utils import atomic_write_bytes, path_inside

__all__ = ["MANIFEST_FILE", "SUMMARY_FILE", "build_manifest", "checkpoint_identity", "clear_outputs", "code_version",
           "differences", "prepare_workdir", "read_manifest"]

MANIFEST_FILE = "run_manifest.json"
FORMAT = 1
_INFORMATIONAL = ("checkpoint.path",)  # recorded, not compared
# Report files an evaluation writes into its workdir (see runner / report / speed); the
# per-sequence files are results.SEQUENCE_FILE_SUFFIXES.
SUMMARY_FILE = "summary.json"
SUBMISSION_PATTERNS = ("*_got10k_test.zip", "*_trackingnet.zip")
REPORT_FOLDERS = ("got10k_submission",)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_version() -> str:
    """The installed grm-jax version ('unknown' when not installed as a distribution)."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("grm-jax")
    except metadata.PackageNotFoundError:
        return "unknown"


def checkpoint_identity(checkpoint) -> dict:
    """{'path', 'model_config_sha256', 'weights_sha256', 'weights_kind'} of a model directory or a
    training work directory (see module doc). Raises what ``grm_jax.checkpoint`` raises for a
    path that is neither."""
    from grm_jax import checkpoint as ck  # noqa: PLC0415  (jax import only when needed)

    config_dir, variables_dir = ck.resolve_variables_dir(checkpoint)
    config = ck.read_model_config(config_dir)
    config_json = json.dumps(config.to_dict(), sort_keys=True, default=str).encode()
    listing = config_dir / ck.MANIFEST_FILE
    if variables_dir == config_dir / ck.VARIABLES_DIR and listing.is_file():
        kind, digest = "sha256 of weights.sha256", _sha256_bytes(listing.read_bytes())
    else:
        rows = [f"step\t{variables_dir.parent.name}"]
        for path in sorted(p for p in variables_dir.rglob("*") if p.is_file()):
            st = path.stat()
            rows.append(f"{path.relative_to(variables_dir).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
        kind = f"file metadata of step {variables_dir.parent.name}"
        digest = _sha256_bytes("\n".join(rows).encode())
    return {"path": str(config_dir), "model_config_sha256": _sha256_bytes(config_json),
            "weights_sha256": digest, "weights_kind": kind}


def build_manifest(checkpoint, dataset: str, threshold: float, track, attention: str, result_format: str) -> dict:
    """The manifest of one evaluation. track: the TrackConfig (crop factors, clip margin, matmul
    precision, dtype are recorded); attention: the implementation actually used."""
    return {
        "format": FORMAT,
        "checkpoint": checkpoint_identity(checkpoint),
        "dataset": str(dataset),
        "threshold": float(threshold),
        "dtype": str(track.dtype),
        "attention": str(attention),
        "result_format": str(result_format),
        "track": {"template_factor": float(track.template_factor), "search_factor": float(track.search_factor),
                  "clip_margin": int(track.clip_margin), "matmul_precision": str(track.matmul_precision)},
        "code_version": code_version(),
    }


def read_manifest(workdir) -> dict | None:
    """The manifest of ``workdir`` (None when absent; {} when unreadable)."""
    path = Path(workdir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _flatten(tree: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differences(old: Mapping, new: Mapping) -> list[str]:
    """'field: old -> new' for every compared field that differs (informational ones skipped)."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '(absent)')} -> {b.get(k, '(absent)')}"
            for k in sorted(set(a) | set(b)) if k not in _INFORMATIONAL and a.get(k) != b.get(k)]


def _existing_results(workdir: Path, names: Iterable[str]) -> list[str]:
    return [n for n in names if any(path_inside(workdir, f"{n}{suffix}").exists()
                                    for suffix in SEQUENCE_FILE_SUFFIXES[:2])]


def clear_outputs(workdir, names: Iterable[str]) -> int:
    """Deletes the result files of sequences ``names`` and the report files of ``workdir``
    (see module doc) and the manifest. Returns the number of paths removed."""
    workdir = Path(workdir)
    removed = 0
    paths = [path_inside(workdir, f"{n}{suffix}") for n in names for suffix in SEQUENCE_FILE_SUFFIXES]
    patterns = (*REPORT_FILE_PATTERNS, SUMMARY_FILE, TIMING_FILE, *SUBMISSION_PATTERNS)
    paths += [p for pattern in patterns for p in workdir.glob(pattern)] + [workdir / MANIFEST_FILE]
    for path in paths:
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed += 1
    for folder in REPORT_FOLDERS:
        if (workdir / folder).is_dir():
            shutil.rmtree(workdir / folder)
            removed += 1
    return removed


def prepare_workdir(workdir, manifest: Mapping, names: Iterable[str], overwrite: bool = False,
                    write: bool = True) -> str:
    """Checks ``workdir`` against ``manifest`` before tracking sequences ``names`` (the whole benchmark).

    Returns 'new' (nothing there), 'resume' (same manifest) or 'overwritten' (old results deleted,
    ``overwrite``). Raises WorkdirError when the workdir holds results of other settings, or result
    files without a manifest, and ``overwrite`` is False. write: write the manifest (process 0 only).
    """
    workdir = Path(workdir)
    names = list(names)
    old = read_manifest(workdir)
    found = _existing_results(workdir, names)
    if old is not None and not differences(old, manifest):
        return "resume"
    if old is None and not found:
        state = "new"
    elif overwrite:
        if write:
            clear_outputs(workdir, names)
        state = "overwritten"
    elif old is None:
        raise WorkdirError(
            f"{workdir} holds result files of {len(found)} sequence(s) ({', '.join(found[:3])}"
            f"{', ...' if len(found) > 3 else ''}) but no {MANIFEST_FILE}, so it is unknown which model and "
            f"settings made them", hint=_HINT)
    else:
        diff = differences(old, manifest) if old else [f"{MANIFEST_FILE} is unreadable"]
        raise WorkdirError(f"{workdir} holds results of a different run: " + "; ".join(diff), hint=_HINT)
    if write:
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(workdir / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return state


_HINT = ("evaluate into a new --workdir, or pass --overwrite to delete those results (and the reports "
         "beside them) and start again")
