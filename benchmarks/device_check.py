"""One command for a machine with an accelerator: speed, roofline and agreement tables, JSON + markdown.

    python benchmarks/device_check.py --out device_check            # GPU/TPU, ViT-B/16 256 (<= 8 min)
    python benchmarks/device_check.py --smoke --out /tmp/dc         # CPU smoke (micro/tiny model, seconds)

Needs jax, flax, optax, orbax-checkpoint, numpy, opencv and torch (the tiny model is read from the
test fixture's PyTorch checkpoint); NOT grain or ml_collections (nothing here imports them). No
network. Real sequences: ``--sequences`` (default: env GRM_REAL_SEQUENCES, else
../shared/real_sequences); without them the tracking and agreement stages are reported as not run.

Stages (each one timed; a failing stage is recorded with its error and the others still run):
1. ``roofline``: forward and train step at ``--train_batches`` in float32 and bfloat16: median ms,
   pairs/s, XLA FLOPs, measured GEMM peak, fraction (``benchmarks/roofline.py``);
2. ``speed``: forward / single-sequence tracking / batched evaluation / train pairs/s for every
   dtype x attention (masked, separate, fused, fused_cudnn), and evaluation over all local devices
   when there are several (``benchmarks/speed.py``);
3. ``agreement``: fused, fused_cudnn and bfloat16 against float32/masked on the real sequences
   (``benchmarks/agreement.py``), tiny fixture model.
Writes ``<out>/device_check.json`` and ``<out>/device_check.md`` (paste the markdown into
benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import jax  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402

import agreement  # noqa: E402
import roofline  # noqa: E402
import speed  # noqa: E402

# (full run, smoke run) arguments of each stage
PLANS = {
    "roofline": (["--model", "vit_b", "--batches", "{train_batches}", "--dtypes", "float32,bfloat16", "--repeats", "5"],
                 ["--model", "micro", "--batches", "2", "--dtypes", "float32", "--repeats", "1", "--square", "128"]),
    "speed": (["--model", "vit_b", "--attentions", "masked,separate,fused,fused_cudnn", "--dtypes", "float32,bfloat16",
               "--repeats", "3", "--frames", "30", "--batches", "1,32", "--batch_frames", "10",
               "--train_batch", "0"],
              ["--model", "tiny", "--attentions", "masked,fused", "--dtypes", "float32", "--repeats", "1",
               "--frames", "3", "--batches", "1,2", "--batch_frames", "2", "--train_batch", "0"]),
    "agreement": (["--model", "tiny", "--frames", "60", "--variants",
                   "float32/fused,float32/separate,bfloat16/fused,bfloat16/fused_cudnn"],
                  ["--model", "tiny", "--frames", "3", "--variants", "float32/fused"]),
}
NEEDS_SEQUENCES = ("speed", "agreement")


def stage_args(name: str, smoke: bool, sequences: str, train_batches: str) -> list[str]:
    args = [a.format(train_batches=train_batches) for a in PLANS[name][1 if smoke else 0]]
    return args + (["--sequences", sequences] if name in NEEDS_SEQUENCES else [])


def run_stage(name: str, fn, args: list[str]) -> dict:
    """Runs ``fn(args)`` capturing its printed table; {'status', 'seconds', 'args', 'table', 'result'|'error'}."""
    buf = io.StringIO()
    t0 = time.perf_counter()
    print(time.strftime("%H:%M:%S"), f"stage {name}: {' '.join(args)}", file=sys.stderr, flush=True)
    try:
        with contextlib.redirect_stdout(buf):
            result = fn(args)
        out = {"status": "ok", "result": result}
    except Exception as e:  # noqa: BLE001  (a failing stage must not lose the others)
        out = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    out.update({"seconds": round(time.perf_counter() - t0, 1), "args": args, "table": buf.getvalue().strip()})
    print(time.strftime("%H:%M:%S"), f"stage {name}: {out['status']} in {out['seconds']} s", file=sys.stderr,
          flush=True)
    return out


def environment() -> dict:
    devs = jax.devices()
    return {"jax": jax.__version__, "python": sys.version.split()[0], "backend": jax.default_backend(),
            "devices": [f"{d.platform}:{d.device_kind}" for d in devs], "device_count": len(devs),
            "cpu_flags": roofline.cpu_flags(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# device check: {env['devices'][0]} x {env['device_count']} ({env['backend']}), jax {env['jax']}, "
             f"Python {env['python']}, {env['date']}", "",
             f"Command: `{report['command']}`; total {report['seconds']} s.", ""]
    for name, st in report["stages"].items():
        lines.append(f"## {name}: {st['status']} ({st['seconds']} s)")
        lines.append("")
        lines.append(f"`{' '.join(st['args'])}`" if st.get("args") else st.get("note", ""))
        lines.append("")
        if st.get("table"):
            lines += [st["table"], ""]
        if st["status"] == "failed":
            lines += [f"Error: {st['error']}", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="device_check", help="folder for device_check.json / .md")
    p.add_argument("--smoke", action="store_true", help="CPU smoke: micro/tiny model, one repeat")
    p.add_argument("--sequences", default=str(speed.SEQUENCES))
    p.add_argument("--train_batches", default="8,32", help="batches of the roofline stage (full run)")
    p.add_argument("--stages", default="roofline,agreement,speed", help="in this order")
    p.add_argument("--budget_s", type=float, default=420.0,
                   help="no stage starts after this many seconds (the whole check must fit 8 minutes)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    fns = {"roofline": roofline.main, "speed": speed.main, "agreement": agreement.main}
    have_sequences = pathlib.Path(args.sequences).is_dir()
    stages = {}
    for name in args.stages.split(","):
        if time.perf_counter() - t0 > args.budget_s:
            stages[name] = {"status": "not run", "seconds": 0.0, "note": f"time budget of {args.budget_s} s spent"}
            continue
        if name in NEEDS_SEQUENCES and not have_sequences:
            stages[name] = {"status": "not run", "seconds": 0.0,
                            "note": f"no real sequences at {args.sequences} (pass --sequences or GRM_REAL_SEQUENCES)"}
            continue
        stages[name] = run_stage(name, fns[name], stage_args(name, args.smoke, args.sequences, args.train_batches))
    report = {"environment": environment(), "smoke": args.smoke, "stages": stages,
              "command": " ".join(["python benchmarks/device_check.py"] + list(argv if argv is not None else sys.argv[1:])),
              "seconds": round(time.perf_counter() - t0, 1)}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "device_check.md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
