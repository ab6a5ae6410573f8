"""Interleaved A/B of one train-step change: the step compiled before and after, timed in turn.

    python benchmarks/train_ab.py --change gelu --model vit_b --batch 2 --repeats 5
    python benchmarks/train_ab.py --change all --model vit_b          # every change at once vs none
    python benchmarks/train_ab.py --change all --model vit_b --step forward   # the inference forward

Changes (``before`` = the code this repository had before the change, kept here as the reference):
* ``gelu``: exact GELU as torch writes it, x/2 (1 + erf(x/sqrt2)), instead of jax.nn.gelu's erfc form;
* ``layout``: token-major (B,N,H,hd) q/k/v in the dense attention instead of head-major (B,H,N,hd)
  (no transpose of the projections, no merge transpose);
* ``ynn_dot``: the train step compiled for XLA:CPU with only the matmuls in YNNPACK fusions
  (``grm_jax.train.step.CPU_TRAIN_COMPILER_OPTIONS``) instead of XLA's default library fusions;
* ``all``: gelu and layout.
The variants are built by switching module attributes while the step is traced and compiled;
both executables then run alternately on the same fixed device batch (state donated).
Prints median ms (wall clock and CPU time of this process), pairs/s and after/before; ``--json`` writes the raw times and the load average.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from benchmarks.roofline import MODELS, cpu_flags, forward_case, model_config, train_case  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.model import GRM, attention, division, init_variables, vit  # noqa: E402
from grm_jax.train import step as step_lib  # noqa: E402

OLD_GELU = functools.partial(jax.nn.gelu, approximate=False)
CHANGES = {  # name: [(module, attribute, value before the change)]
    "gelu": [(division, "gelu", OLD_GELU), (vit, "gelu", OLD_GELU)],
    "layout": [(attention, "TOKEN_MAJOR", False)],
    "ynn_dot": [(step_lib, "CPU_TRAIN_COMPILER_OPTIONS", {})],
}
CHANGES["all"] = [x for k in ("gelu", "layout") for x in CHANGES[k]]


@contextlib.contextmanager
def before(change: str):
    """The code as it was before ``change`` while the block runs."""
    saved = [(m, a, getattr(m, a)) for m, a, _ in CHANGES[change]]
    try:
        for m, a, old in CHANGES[change]:
            setattr(m, a, old)
        yield
    finally:
        for m, a, now in saved:
            setattr(m, a, now)


def main(argv=None) -> dict:
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--change", choices=sorted(CHANGES), default="all")
    p.add_argument("--model", choices=sorted(MODELS), default="tiny")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--step", choices=["train", "forward"], default="train",
                   help="the train step, or the network forward (inference mode)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cfg = model_config(args.model)
    variables = init_variables(GRM(cfg), jax.random.PRNGKey(0))
    dt = jax.numpy.float32
    case = train_case if args.step == "train" else forward_case
    with before(args.change):
        fn_before, flops = case(cfg, dt, args.batch, variables)
    fn_after, flops_after = case(cfg, dt, args.batch, variables)
    runs = {"before": fn_before, "after": fn_after}
    for fn in runs.values():
        jax.block_until_ready(fn())
    times, cpu = {k: [] for k in runs}, {k: [] for k in runs}
    for i in range(args.repeats):
        for k in (("before", "after") if i % 2 == 0 else ("after", "before")):
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(runs[k]())
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    load = os.getloadavg()
    out = {"change": args.change, "step": args.step, "model": args.model, "batch": args.batch, "repeats": args.repeats,
           "cpu_flags": cpu_flags(), "load_average": load, "ms": {k: [1e3 * t for t in v] for k, v in times.items()},
           "cpu_ms": {k: [1e3 * t for t in v] for k, v in cpu.items()},
           "gflop": {"before": flops / 1e9, "after": flops_after / 1e9}, "speedup": med["before"] / med["after"],
           "speedup_cpu_time": med_cpu["before"] / med_cpu["after"]}
    print(f"change {args.change}, model {args.model}, {args.step} step batch {args.batch}, {args.repeats} interleaved "
          f"repeats, {jax.devices()[0].device_kind} {cpu_flags()}, load average {load[0]:.1f}")
    print("| variant | ms (median) | pairs/s | CPU ms (median) | GFLOP (XLA) |\n|---|---|---|---|---|")
    for k in runs:
        print(f"| {k} | {1e3 * med[k]:.1f} | {args.batch / med[k]:.3f} | {1e3 * med_cpu[k]:.1f} | "
              f"{out['gflop'][k]:.1f} |")
    print(f"after/before speed: {out['speedup']:.3f}x wall clock, {out['speedup_cpu_time']:.3f}x CPU time")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
