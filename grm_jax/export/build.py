"""Serializes the tracker's device step with ``jax.export`` (see :mod:`grm_jax.export.loader`).

The exported function is ``grm_jax.track.tracker.device_step(..., score_map=True)``: ImageNet
normalization of the uint8 crops, the network with the division threshold, the Hann window and
the box decoding, traced under the tracker's matmul precision. Host-side steps (the crops, the
map-back to image coordinates and the clipping) stay outside, as in the tracker.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from grm_jax.errors import CheckpointError, ConfigError
from grm_jax.export.loader import FORMAT, META_FILE, SEPARATOR, STEP_FILE, VARIABLES_FILE
from grm_jax.io_utils import AtomicFiles

__all__ = ["PLATFORMS", "StepSpec", "export_step", "flatten", "load_step_spec", "metadata", "step_avals"]

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
# jax.export platform name -> jax backend name (the key of grm_jax.model.attention.INFERENCE_ATTENTION)
_BACKEND = {"cpu": "cpu", "cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything an export is made from: the model and how the tracker runs it.

    model_config: the checkpoint's ``ModelConfig``; variables: {'params', 'batch_stats'};
    track: a ``grm_jax.track.tracker.TrackParams`` (crop factors and sizes, clip margin, precision);
    dtype: 'float32' | 'bfloat16'; attention: inference attention implementation; batch: B."""

    model_config: object
    variables: dict
    track: object
    dtype: str
    attention: str
    batch: int


def parse_platforms(text: str | Sequence[str]) -> tuple[str, ...]:
    """'cpu,cuda' -> ('cpu', 'cuda'); ConfigError naming an unknown platform."""
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    for p in items:
        if p not in PLATFORMS:
            raise ConfigError(f"--platforms: unknown platform {p!r}", hint=f"one or more of {', '.join(PLATFORMS)}")
    if not items:
        raise ConfigError("--platforms: empty", hint=f"one or more of {', '.join(PLATFORMS)}")
    return tuple(dict.fromkeys(items))


def load_step_spec(model_dir, batch: int = 1, dtype: str | None = None, attention: str | None = None,
                   platform: str = "cpu", run=None) -> StepSpec:
    """The model directory ``model_dir`` (converted weights or a training workdir) -> StepSpec.

    run: the RunConfig (None = defaults) whose ``track`` section is merged with the model's own
    track settings (grm_jax.track_settings.PRECEDENCE); crop sizes come from the checkpoint, as in
    the tracker. dtype / attention (flags): None = the resolved track settings'; an attention of
    None there = the tracker's choice for ``platform``."""
    from grm_jax.checkpoint import load_model  # noqa: PLC0415
    from grm_jax.run_config import RunConfig  # noqa: PLC0415
    from grm_jax.track.tracker import TrackParams, inference_config  # noqa: PLC0415
    from grm_jax.track_settings import resolve_for_checkpoint, with_override  # noqa: PLC0415

    if int(batch) < 1:
        raise ConfigError(f"--batch={batch}: must be >= 1")
    run = RunConfig() if run is None else run
    for key, value in (("dtype", dtype), ("attention", attention)):
        if value is not None:
            run = with_override(run, key, value)
    settings = resolve_for_checkpoint(run, model_dir, backend=_BACKEND[platform])
    model, variables = load_model(model_dir)
    attention = inference_config(model.config, settings.attention).attention
    track = TrackParams.from_config(settings.track, model.config)
    return StepSpec(model.config, {k: variables[k] for k in ("params", "batch_stats")}, track, settings.dtype,
                    attention, int(batch))


def step_avals(spec: StepSpec) -> tuple:
    """Abstract inputs (template_u8, search_u8, resize_factor, threshold) of the device step."""
    t, s, b = spec.model_config.template_size, spec.model_config.search_size, spec.batch
    return (jax.ShapeDtypeStruct((b, t, t, 3), jnp.uint8), jax.ShapeDtypeStruct((b, s, s, 3), jnp.uint8),
            jax.ShapeDtypeStruct((b,), jnp.float32), jax.ShapeDtypeStruct((), jnp.float32))


def step_fn(spec: StepSpec):
    """``step(variables, template_u8, search_u8, resize_factor, threshold) -> (box_px, decisions,
    score_map)``: the tracker's device step with the score map (un-jitted)."""
    from grm_jax.track.tracker import device_step  # noqa: PLC0415

    return device_step(spec.model_config, spec.dtype, spec.attention, score_map=True)


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{'a': {'b': x}} -> {'a/b': np.asarray(x)} (the inverse of ``loader.unflatten``)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if SEPARATOR in str(key):
            raise CheckpointError(f"variable name {key!r} contains {SEPARATOR!r}; cannot be exported")
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if not value:
                raise CheckpointError(f"variables: {name} is an empty collection; cannot be exported")
            flat.update(flatten(value, name + SEPARATOR))
        else:
            flat[name] = np.asarray(value)
    return flat


def _io_spec(names, avals) -> list[dict]:
    return [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)} for n, a in zip(names, avals)]


INPUT_NAMES = ("template", "search", "resize_factor", "threshold")
OUTPUT_NAMES = ("box_px", "decisions", "score_map")


def metadata(spec: StepSpec, kind: str, out_avals, **extra) -> dict:
    """export.json contents for ``spec`` (kind 'jax' or 'onnx'); ``out_avals`` of OUTPUT_NAMES."""
    track = spec.track
    return {
        "format": FORMAT, "kind": kind, "batch": spec.batch, "dtype": spec.dtype, "attention": spec.attention,
        "inputs": _io_spec(INPUT_NAMES, step_avals(spec)), "outputs": _io_spec(OUTPUT_NAMES, out_avals),
        "track": {"template_factor": track.template_factor, "template_size": track.template_size,
                  "search_factor": track.search_factor, "search_size": track.search_size,
                  "clip_margin": track.clip_margin, "matmul_precision": track.matmul_precision},
        "divide_layers": list(spec.model_config.divide_layers),
        "model_config": json.loads(spec.model_config.to_json()), "jax_version": jax.__version__, **extra,
    }


def export_step(spec: StepSpec, out_dir, platforms: Sequence[str] = ("cpu",)) -> Path:
    """Writes ``out_dir`` (step.jaxexport, variables.npz, export.json with their sha256; replaced
    together) -> out_dir."""
    platforms = parse_platforms(platforms)
    var_avals = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                                       spec.variables)
    precision = spec.track.matmul_precision
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        exported = jax.export.export(jax.jit(step_fn(spec)), platforms=platforms)(var_avals, *step_avals(spec))
    out_dir = Path(out_dir)
    step_bytes = bytes(exported.serialize())
    buffer = io.BytesIO()
    np.savez(buffer, **flatten(spec.variables))
    files = {STEP_FILE: step_bytes, VARIABLES_FILE: buffer.getvalue()}
    meta = metadata(spec, "jax", exported.out_avals, platforms=list(platforms),
                    sha256={name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    with AtomicFiles() as out:
        for name, data in files.items():
            out.write_bytes(out_dir / name, data)
        out.write_text(out_dir / META_FILE, json.dumps(meta, indent=1) + "\n")
    return out_dir
