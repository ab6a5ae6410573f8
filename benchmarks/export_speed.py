"""Latency of the deployable exports against the live tracking step, batch 1 (one table).

    python benchmarks/export_speed.py                          # tiny fixture model and ViT-B/16 256 (random)
    python benchmarks/export_speed.py --models tiny --repeats 50

Per model: the live step (``grm_jax.track.tracker.run_step``, jitted, fp32 'highest'), the
``jax.export`` artifact run by ``grm_jax.export.load_exported``, and, when jax2onnx and onnxruntime
are importable (the ``[onnx]`` extra; README "Deploying"), the ONNX export in onnxruntime (CPU
provider). Median and p90 in ms over ``--repeats`` calls on the same real-sized uint8 crops, after
``--warmup`` calls; the variants are interleaved so that machine noise hits them alike. Export
times (s) are printed too. Weights do not change the speed: ViT-B uses random weights.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from grm_jax import save_model  # noqa: E402
from grm_jax.export import export_step, load_exported, load_step_spec  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.track.tracker import run_step  # noqa: E402


def _build_model(name: str):
    """benchmarks/speed.py's models: 'tiny' (the converted test fixture) or 'vit_b' (random)."""
    spec = importlib.util.spec_from_file_location("_speed", REPO / "benchmarks" / "speed.py")
    speed = sys.modules.setdefault("_speed", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(speed)
    return speed.build_model(name)


def _has_onnx() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("jax2onnx", "onnxruntime"))


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return (time.perf_counter() - start) * 1e3


def measure(name: str, workdir: pathlib.Path, repeats: int, warmup: int) -> list[tuple]:
    model, variables = _build_model(name)
    model_dir = save_model(workdir / name, model.config, variables)
    spec = load_step_spec(model_dir)
    rng = np.random.default_rng(0)
    t = rng.integers(0, 256, (1, spec.model_config.template_size, spec.model_config.template_size, 3), np.uint8)
    s = rng.integers(0, 256, (1, spec.model_config.search_size, spec.model_config.search_size, 3), np.uint8)
    rf, thr = np.asarray([1.5], np.float32), 0.0
    calls, built = {"live step (jit)": lambda: run_step(model.config, jnp.float32, "highest", variables, t, s, rf,
                                                        thr)[0]}, {}
    start = time.perf_counter()
    exported = load_exported(export_step(spec, workdir / f"{name}_jax"))
    built["jax.export"] = time.perf_counter() - start
    calls["jax.export"] = lambda: exported(t, s, rf, thr)[0]
    if _has_onnx():
        from grm_jax.export import export_onnx, load_onnx  # noqa: PLC0415

        start = time.perf_counter()
        onnx_step = load_onnx(export_onnx(spec, workdir / f"{name}_onnx"))
        built["onnx"] = time.perf_counter() - start
        calls["onnxruntime"] = lambda: onnx_step(t, s, rf, thr)[0]
    for fn in calls.values():
        for _ in range(warmup):
            _timed(fn)
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            times[k].append(_timed(fn))
    rows = []
    for k, ts in times.items():
        export_s = built.get("onnx" if k == "onnxruntime" else k)
        rows.append((name, k, statistics.median(ts), float(np.percentile(ts, 90)), export_s))
    return rows


def main(argv=None) -> int:
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,vit_b", help="comma-separated: tiny, vit_b")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += measure(name.strip(), pathlib.Path(tmp), args.repeats, args.warmup)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
          f"({jax.default_backend()}), batch 1, median of {args.repeats} after {args.warmup} warm-up calls")
    print("| model | runs as | median ms | p90 ms | export s |")
    print("|---|---|---|---|---|")
    for name, k, med, p90, export_s in rows:
        print(f"| {name} | {k} | {med:.1f} | {p90:.1f} | {'' if export_s is None else f'{export_s:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
