"""``python -m grm_jax.export MODEL_DIR OUT``: writes a deployable export of the tracking step.

    python -m grm_jax.export models/grm_got exports/grm_got                     # jax.export, CPU, batch 1
    python -m grm_jax.export models/grm_got exports/grm_got_gpu --batch 8 --dtype bfloat16 --platforms cuda,tpu
    python -m grm_jax.export models/grm_got exports/grm_got_onnx --format onnx  # needs the [onnx] extra

Exit status 0 ok, 2 bad input (one line naming the file, flag or value).
"""
from __future__ import annotations

import argparse
import sys
import time

from grm_jax.errors import report_error

FORMATS = ("jax", "onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m grm_jax.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="model directory (python -m convert_weights) or training workdir")
    parser.add_argument("out", help="output directory (its export files are replaced together)")
    parser.add_argument("--format", choices=FORMATS, default="jax", help="jax.export (default) or ONNX")
    parser.add_argument("--batch", type=int, default=1, help="batch size B of the exported step (default 1)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"),
                        help="compute dtype (default: the config's track.dtype, float32); ONNX: float32 only")
    parser.add_argument("--platforms", default="cpu",
                        help="jax.export target platforms, comma-separated: cpu, cuda, rocm, tpu (default cpu)")
    parser.add_argument("--attention", choices=("masked", "separate", "fused"),
                        help="attention implementation (default: the tracker's for the first platform)")
    parser.add_argument("--config", help="run config (bundled name or file) whose 'track' section gives the matmul "
                                         "precision (crop factors: the model's own, see README 'Run configs')")
    parser.add_argument("--verbose", action="store_true", help="show the traceback of errors")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from grm_jax.export.build import export_step, load_step_spec, parse_platforms  # noqa: PLC0415

        platforms = parse_platforms(args.platforms)
        run = None
        if args.config:
            from grm_jax.configuration import load_run_config  # noqa: PLC0415
            run = load_run_config(args.config)
        start = time.perf_counter()
        spec = load_step_spec(args.model_dir, args.batch, args.dtype, args.attention, platforms[0], run)
        if args.format == "onnx":
            from grm_jax.export.onnx import export_onnx  # noqa: PLC0415
            out = export_onnx(spec, args.out)
        else:
            out = export_step(spec, args.out, platforms)
    except Exception as err:  # noqa: BLE001  (GrmError: one line; anything else: a bug, with its traceback)
        return report_error(err, args.verbose)
    what = "ONNX" if args.format == "onnx" else f"jax.export for {','.join(platforms)}"
    print(f"wrote {out} ({what}, batch {spec.batch}, {spec.dtype}, {spec.attention} attention) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
