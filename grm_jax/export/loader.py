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
B is fixed at export time (``--batch``). Bad or missing files raise ValueError / FileNotFoundError
naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

__all__ = ["ExportedStep", "FORMAT", "META_FILE", "STEP_FILE", "VARIABLES_FILE", "load_exported",
           "read_metadata", "unflatten"]

FORMAT = "grm-jax-export-1"
STEP_FILE = "step.jaxexport"
VARIABLES_FILE = "variables.npz"
META_FILE = "export.json"
SEPARATOR = "/"


def read_metadata(path, kind: str) -> dict:
    """``<path>/export.json`` as a dict, checked to be an export of ``kind`` ('jax' or 'onnx')."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; not a directory written by python -m grm_jax.export")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                         f"expected {FORMAT!r}")
    if meta.get("kind") != kind:
        raise ValueError(f"{meta_path}: holds a {meta.get('kind')!r} export, not {kind!r}")
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
    try:
        exported = jax.export.deserialize(bytearray(step_path.read_bytes()))
    except Exception as err:  # flatbuffer / MLIR errors have no common base class
        raise ValueError(f"{step_path}: cannot deserialize ({type(err).__name__}: {err})") from None
    try:
        with np.load(variables_path, allow_pickle=False) as npz:
            flat = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{variables_path}: cannot read ({err})") from None
    return ExportedStep(exported, unflatten(flat), meta)
