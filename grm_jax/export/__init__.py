"""Deployable exports of the tracking step: ``jax.export`` (StableHLO) and ONNX.

    python -m grm_jax.export MODEL_DIR OUT [--batch N] [--dtype bfloat16] [--platforms cpu,cuda,tpu]
    python -m grm_jax.export MODEL_DIR OUT --format onnx          # needs the [onnx] extra

* :mod:`grm_jax.export.build`: the jitted device step of the tracker (normalize, network, window,
  decode), serialized with ``jax.export`` for one or more platforms, plus its weights.
* :mod:`grm_jax.export.loader`: :func:`load_exported` runs such an export with jax, numpy and
  flatbuffers alone (no model code); the inputs are those of the tracker's device call.
* :mod:`grm_jax.export.onnx`: the same step as an ONNX graph (jax2onnx);
  :mod:`grm_jax.export.onnx_loader` (:func:`load_onnx`) runs it with onnxruntime and numpy alone.
"""
from grm_jax.export.build import StepSpec, export_step, load_step_spec
from grm_jax.export.loader import ExportedStep, load_exported
from grm_jax.export.onnx import OnnxStep, export_onnx, load_onnx

__all__ = ["ExportedStep", "OnnxStep", "StepSpec", "export_onnx", "export_step", "load_exported", "load_onnx",
           "load_step_spec"]
