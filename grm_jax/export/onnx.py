"""ONNX export of the tracking step through ``jax2onnx`` (extra ``[onnx]``), run with onnxruntime.

The ONNX graph is the same device step as the ``jax.export`` artifact (:mod:`grm_jax.export.build`)
with the weights as initializers: inputs ``template`` (B,T,T,3) uint8, ``search`` (B,S,S,3) uint8,
``resize_factor`` (B,) float32, ``threshold`` () float32; outputs ``box_px`` (B,4) float32,
``decisions`` (B,L,Nx) bool, ``score_map`` (B,Hs,Ws,1) float32 (see :mod:`grm_jax.export.loader`).

jax2onnx 0.17 pins orbax-checkpoint < 0.11.37, older than grm-jax's working environment: install
the extra into its own virtual environment (README, "Deploying"). Running an export needs only
onnxruntime and numpy: :mod:`grm_jax.export.onnx_loader` (``load_onnx``) imports nothing else.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path


from grm_jax.errors import ConfigError
from grm_jax.export.build import INPUT_NAMES, OUTPUT_NAMES, StepSpec, metadata, step_avals, step_fn
from grm_jax.export.loader import META_FILE
from grm_jax.export.onnx_loader import ONNX_FILE, OnnxStep, load_onnx
from grm_jax.io_utils import AtomicFiles

__all__ = ["ONNX_FILE", "OnnxStep", "export_onnx", "load_onnx"]


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"ONNX export needs the '{module}' package, which is not installed",
                          hint='pip install -e ".[onnx]" (in its own virtual environment; README, Deploying)') from None


def export_onnx(spec: StepSpec, out_dir, opset: int = 23) -> Path:
    """Writes ``out_dir`` (step.onnx, export.json; replaced together) -> out_dir. float32 only."""
    _require("jax2onnx")
    import jax  # noqa: PLC0415
    from jax2onnx import to_onnx  # noqa: PLC0415

    if spec.dtype != "float32":
        raise ConfigError(f"--dtype={spec.dtype}: the ONNX export is float32 only")
    body, variables = step_fn(spec), jax.device_put(spec.variables)

    def step(template_u8, search_u8, resize_factor, threshold):
        return body(variables, template_u8, search_u8, resize_factor, threshold)

    avals = step_avals(spec)
    out_avals = jax.eval_shape(step, *avals)
    ir_log = logging.getLogger("onnx_ir")  # one warning per untyped shape constant: not actionable
    level = ir_log.level
    ir_log.setLevel(logging.ERROR)
    try:
        model = to_onnx(step, list(avals), model_name="grm_jax_step", opset=opset, return_mode="proto",
                        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES))
    finally:
        ir_log.setLevel(level)
    out_dir = Path(out_dir)
    graph = model.SerializeToString()
    meta = metadata(spec, "onnx", out_avals, opset=opset, sha256={ONNX_FILE: hashlib.sha256(graph).hexdigest()})
    with AtomicFiles() as out:
        out.write_bytes(out_dir / ONNX_FILE, graph)
        out.write_text(out_dir / META_FILE, json.dumps(meta, indent=1) + "\n")
    return out_dir
