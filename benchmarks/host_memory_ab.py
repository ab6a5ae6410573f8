"""Process-level A/B of ``grm_jax.host_memory.keep_freed_memory``: the train step (or the forward)
timed in fresh processes with the glibc setting off and on, alternating.

    python benchmarks/host_memory_ab.py --model vit_b --batch 2 --rounds 3 --steps 8
    python benchmarks/host_memory_ab.py --model micro --rounds 1 --steps 2     # smoke (seconds)

The allocator setting is process-wide and must come before jax starts its threads, so each
variant runs in its own process (``GRM_KEEP_FREED_MEMORY=0`` / ``1``), in the order off, on, on,
off, ... (``--rounds`` pairs). Each process warms up, then times ``--steps`` steps and reports
per step: wall clock, user and system CPU time and minor page faults (``getrusage``). Prints the
medians over the processes of each variant and on/off ratios; ``--json`` writes every process's
figures.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from grm_jax.host_memory import ENV_SWITCH, keep_freed_memory  # noqa: E402

VARIANTS = {"off": "0", "on": "1"}


def child(args) -> dict:
    """One process: the setting as the environment says, then ``args.steps`` timed steps."""
    applied = keep_freed_memory()
    import jax  # noqa: PLC0415  (after the allocator setting, as in launch.main)

    from benchmarks.roofline import cpu_flags, forward_case, measured_call, model_config, train_case  # noqa: PLC0415
    from grm_jax.model import GRM, init_variables  # noqa: PLC0415

    cfg = model_config(args.model)
    case = train_case if args.step == "train" else forward_case
    fn, _ = case(cfg, jax.numpy.float32, args.batch, init_variables(GRM(cfg), jax.random.PRNGKey(0)))
    for _ in range(2):
        jax.block_until_ready(fn())
    rows = []
    for _ in range(args.steps):
        cost = measured_call(fn)
        rows.append({"ms": 1e3 * cost["s"], "user_ms": 1e3 * (cost["cpu_s"] - cost["sys_s"]),
                     "sys_ms": 1e3 * cost["sys_s"], "faults": cost["faults"]})
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {**out, "applied": applied, "cpu_flags": cpu_flags(), "load_average": os.getloadavg()[0]}


def run_variant(args, name: str) -> dict:
    env = {**os.environ, ENV_SWITCH: VARIANTS[name]}
    cmd = [sys.executable, __file__, "--child", "--model", args.model, "--batch", str(args.batch),
           "--steps", str(args.steps), "--step", args.step]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="micro")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--step", choices=["train", "forward"], default="train")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="off/on process pairs")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return {}
    runs = {name: [] for name in VARIANTS}
    for i in range(args.rounds):
        for name in (("off", "on") if i % 2 == 0 else ("on", "off")):
            runs[name].append(run_variant(args, name))
            print(f"round {i + 1} {name}: {runs[name][-1]['ms']:.1f} ms/step", file=sys.stderr, flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("ms", "user_ms", "sys_ms", "faults")}
           for name, rs in runs.items()}
    first = runs["on"][0]
    print(f"{args.model} {args.step} step, batch {args.batch}: {args.rounds} processes per variant, {args.steps} "
          f"steps each; {first['cpu_flags']}, load average {first['load_average']:.1f}")
    print("| keep_freed_memory | ms per step | user CPU ms | system CPU ms | minor faults per step |\n|---|---|---|---|---|")
    for name in VARIANTS:
        m = med[name]
        print(f"| {name} | {m['ms']:.1f} | {m['user_ms']:.0f} | {m['sys_ms']:.0f} | {m['faults']:.0f} |")
    cpu = {name: med[name]["user_ms"] + med[name]["sys_ms"] for name in VARIANTS}
    out = {"args": vars(args), "runs": runs, "median": med,
           "speedup": med["off"]["ms"] / med["on"]["ms"], "cpu_time_ratio": cpu["off"] / cpu["on"]}
    print(f"on vs off: {out['speedup']:.3f}x wall clock, {out['cpu_time_ratio']:.3f}x CPU time")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
