"""Runs an ONNX export (``python -m grm_jax.export ... --format onnx``) with onnxruntime alone.

This module imports only the standard library, ``numpy`` and ``onnxruntime`` (nothing from
grm-jax, no jax), so it can be copied next to an export and used where grm-jax is not installed:

    pip install numpy onnxruntime          # or onnxruntime-gpu
    from onnx_loader import load_onnx      # this file, copied
    step = load_onnx("exports/grm_got_onnx")
    box_px, decisions, score_map = step(template_u8, search_u8, resize_factor, threshold=0.0)

An ONNX export directory holds ``step.onnx`` (the graph, weights as initializers) and
``export.json`` (metadata, ``"kind": "onnx"``). The graph's inputs, in this order, are
``template`` (B,T,T,3) uint8, ``search`` (B,S,S,3) uint8, ``resize_factor`` (B,) float32 and
``threshold`` () float32; its outputs ``box_px`` (B,4) float32 (cx, cy, w, h) = box * S /
resize_factor, ``decisions`` (B,L,Nx) bool (1 = token in E_A) and ``score_map`` (B,Hs,Ws,1)
float32 (see ``grm_jax/export/loader.py`` for the same step under jax.export).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["ONNX_FILE", "OnnxStep", "load_onnx"]

ONNX_FILE = "step.onnx"
_META_FILE = "export.json"


class OnnxStep:
    """An onnxruntime session of an ONNX export: ``step(template_u8, search_u8, resize_factor,
    threshold=0.0)`` -> (box_px, decisions, score_map) as numpy arrays; ``metadata`` is export.json."""

    def __init__(self, session, metadata: dict):
        self.session = session
        self.metadata = metadata
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def __call__(self, template_u8, search_u8, resize_factor, threshold=0.0):
        values = (np.asarray(template_u8, np.uint8), np.asarray(search_u8, np.uint8),
                  np.asarray(resize_factor, np.float32).reshape(-1), np.asarray(threshold, np.float32))
        return tuple(self.session.run(self.output_names, dict(zip(self.input_names, values))))


def _read_metadata(path: Path) -> dict:
    meta_path = path / _META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; not a directory written by python -m grm_jax.export")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta_path}: not valid JSON ({err})") from None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind != "onnx":
        raise ValueError(f"{meta_path}: holds a {kind!r} export, not 'onnx' (write one with --format onnx)")
    return meta


def _verify_sha256(onnx_path: Path, meta: dict) -> None:
    """Checks step.onnx against the sha256 export.json lists (older exports list none), so a
    truncated or damaged graph is refused before onnxruntime parses it."""
    sums = meta.get("sha256")
    if sums is None:
        return
    digest = hashlib.sha256()
    with open(onnx_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not isinstance(sums, dict) or sums.get(ONNX_FILE) != digest.hexdigest():
        raise ValueError(f"{onnx_path}: does not match its sha256 in {_META_FILE} (truncated, damaged or "
                         "replaced); nothing was run")


def load_onnx(path, providers=("CPUExecutionProvider",)) -> OnnxStep:
    """The export directory ``path`` written with ``--format onnx`` -> :class:`OnnxStep`.
    providers: onnxruntime execution providers, e.g. ("CUDAExecutionProvider", "CPUExecutionProvider")."""
    path = Path(path)
    meta = _read_metadata(path)
    onnx_path = path / ONNX_FILE
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: missing from the export")
    _verify_sha256(onnx_path, meta)
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        raise ImportError("running an ONNX export needs the 'onnxruntime' package: pip install onnxruntime "
                          "(or onnxruntime-gpu)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only (not the notes on unused initializers)
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=list(providers))
    except Exception as err:  # onnxruntime's errors (Fail, InvalidProtobuf, ...) share no public base class
        raise ValueError(f"{onnx_path}: onnxruntime cannot load it ({type(err).__name__}: {str(err)[:200]})") from None
    return OnnxStep(session, meta)
