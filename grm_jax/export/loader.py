"""Runs an exported tracking step (``python -m grm_jax.export``) without the model code.

This module needs only ``jax``, ``numpy`` and ``flatbuffers`` (jax reads the serialized step with
it, but does not install it: ``pip install jax numpy flatbuffers``; grm-jax itself depends on it).
It imports nothing else from grm-jax, so it can be copied next to an export and used where
grm-jax is not installed. Without flatbuffers, :func:`load_exported` says so in one ImportError.

    step = load_exported("exports/grm_got")
    box_px, decisions, score_map = step(template_u8, search_u8, resize_factor, threshold=0.0)

An export directory holds:
    step.jaxexport   the serialized ``jax.export.Exported`` of the jitted step
    variables.npz    the weights, one array per leaf, keys '/'-joined paths ('params/backbone/...')
    export.json      metadata: inputs, outputs, crop parameters, model config, dtype, platforms

Inputs and outputs are the tracker's device call (``grm_jax.track.tracker.device_step``):
    template_u8 (B, T, T, 3) uint8 RGB template crop, search_u8 (B, S, S, 3) uint8 RGB search crop,
    resize_factor (B,) float32 (crop side / original side), threshold () float32 (0 = argmax)
    -> box_px (B, 4) float32 (cx, cy, w, h) in original-image pixels relative to the crop origin,
       i.e. ``box * S / resize_factor``; decisions (B, L, Nx) bool (1 = token in E_A);
       score_map (B, Hs, Ws, 1) float32 (the network's, before the Hann window).
B is fixed at export time (``--batch``). Bad or missing files raise ExportError (a ValueError) /
FileNotFoundError naming the file.

Before anything runs, :func:`load_exported` checks (1) every file against the sha256 that
export.json lists for it (a truncated, damaged or random-bytes file is refused before a parser
sees it) and (2) the deserialized StableHLO module: a ``custom_call`` whose target is not in
``ALLOWED_CUSTOM_CALLS`` (code outside the module, e.g. a Python callback that would crash the
process), or a host ``send`` / ``recv`` / ``infeed`` / ``outfeed``, is refused with one line
naming it.
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import jax
import numpy as np

__all__ = ["ALLOWED_CUSTOM_CALLS", "ExportError", "ExportedStep", "FORMAT", "META_FILE", "STEP_FILE",
           "VARIABLES_FILE", "check_custom_calls", "load_exported", "read_metadata", "sha256_file", "unflatten",
           "verify_files"]

FORMAT = "grm-jax-export-1"
STEP_FILE = "step.jaxexport"
VARIABLES_FILE = "variables.npz"
META_FILE = "export.json"
SEPARATOR = "/"
# custom_call targets grm-jax's exporter emits. Exporting the step for cpu, cuda and tpu with every
# attention implementation, in float32 and bfloat16, emits none: every target is refused.
ALLOWED_CUSTOM_CALLS: frozenset[str] = frozenset()
_CUSTOM_CALL = re.compile(r'custom_call\s*@("(?:[^"\\]|\\.)*"|[\w$.\-]+)|call_target_name\s*=\s*"((?:[^"\\]|\\.)*)"')
_HOST_OPS = re.compile(r"\b(?:stablehlo|mhlo)\.(send|recv|infeed|outfeed)\b")


class ExportError(ValueError):
    """An export directory cannot be used: a damaged file, a wrong format, or a module that calls
    code outside itself. The message names the file (and the target or value)."""


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(path, meta: dict, names) -> None:
    """Checks each file of ``names`` in the export ``path`` against ``meta['sha256']`` (older
    exports carry no sums: nothing to check)."""
    sums = meta.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise ExportError(f"{Path(path) / META_FILE}: 'sha256' is not a table of file sums")
    for name in names:
        file = Path(path) / name
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing from the export")
        if sums.get(name) != sha256_file(file):
            raise ExportError(f"{file}: does not match its sha256 in {META_FILE} (truncated, damaged or replaced); "
                              "nothing was run")


def check_custom_calls(exported, source) -> None:
    """ExportError naming the first custom_call target outside ALLOWED_CUSTOM_CALLS, or host
    transfer op, in the StableHLO module of ``exported`` (read as text; nothing is compiled)."""
    text = exported.mlir_module()
    for match in _CUSTOM_CALL.finditer(text):
        target = (match[1] or "").strip('"') or match[2] or ""
        if target not in ALLOWED_CUSTOM_CALLS:
            raise ExportError(f"{source}: the module calls custom_call target {target!r}, which grm-jax's exporter "
                              "never emits (code outside the module); refusing to load it")
    host = _HOST_OPS.search(text)
    if host:
        raise ExportError(f"{source}: the module uses the host transfer op {host[0]!r}, which grm-jax's exporter "
                          "never emits; refusing to load it")


def _read_npz(path: Path) -> dict:
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ExportError(f"{path}: not a .npz archive (no zip signature); the file is damaged or of another "
                              "format")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ExportError(f"{path}: damaged ({type(err).__name__}: {err})") from None


def read_metadata(path, kind: str) -> dict:
    """``<path>/export.json`` as a dict, checked to be an export of ``kind`` ('jax' or 'onnx')."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; not a directory written by python -m grm_jax.export")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExportError(f"{meta_path}: format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                         f"expected {FORMAT!r}")
    if meta.get("kind") != kind:
        raise ExportError(f"{meta_path}: holds a {meta.get('kind')!r} export, not {kind!r}")
    return meta


def unflatten(flat: dict) -> dict:
    """{'a/b/c': array} -> {'a': {'b': {'c': array}}}."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(SEPARATOR)
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


class ExportedStep:
    """A deserialized step with its weights. ``step(template_u8, search_u8, resize_factor,
    threshold=0.0)`` -> (box_px, decisions, score_map) as jax arrays (see module doc);
    ``call(variables, ...)`` passes other weights of the same architecture. ``metadata`` is
    export.json; ``exported`` the ``jax.export.Exported``."""

    def __init__(self, exported, variables: dict, metadata: dict):
        self.exported = exported
        self.metadata = metadata
        self.variables = jax.device_put(variables)
        self._call = jax.jit(exported.call)

    def call(self, variables, template_u8, search_u8, resize_factor, threshold=0.0):
        rf = np.asarray(resize_factor, np.float32).reshape(-1)
        return self._call(variables, np.asarray(template_u8, np.uint8), np.asarray(search_u8, np.uint8), rf,
                          np.float32(threshold))

    def __call__(self, template_u8, search_u8, resize_factor, threshold=0.0):
        return self.call(self.variables, template_u8, search_u8, resize_factor, threshold)


def load_exported(path) -> ExportedStep:
    """The export directory ``path`` (see module doc) -> :class:`ExportedStep`."""
    path = Path(path)
    meta = read_metadata(path, "jax")
    step_path, variables_path = path / STEP_FILE, path / VARIABLES_FILE
    for p in (step_path, variables_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing from the export")
    try:
        import flatbuffers  # noqa: F401, PLC0415  (jax.export.deserialize needs it; jax does not install it)
    except ImportError:
        raise ImportError(f"{step_path}: reading a jax.export file needs the 'flatbuffers' package besides jax and "
                          f"numpy: pip install flatbuffers") from None
    verify_files(path, meta, (STEP_FILE, VARIABLES_FILE))
    try:
        exported = jax.export.deserialize(bytearray(step_path.read_bytes()))
    except Exception as err:  # flatbuffer / MLIR errors have no common base class
        raise ExportError(f"{step_path}: cannot deserialize ({type(err).__name__}: {str(err)[:200]})") from None
    check_custom_calls(exported, step_path)
    return ExportedStep(exported, unflatten(_read_npz(variables_path)), meta)
