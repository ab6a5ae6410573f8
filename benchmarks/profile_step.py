"""Where the train step's (or the forward's) time goes: a jax.profiler trace of a few steps,
summed per HLO op kind.

    python benchmarks/profile_step.py                         # tiny model, batch 2
    python benchmarks/profile_step.py --model vit_b --batch 2 --steps 2 --top 25
    python benchmarks/profile_step.py --model vit_b --batch 2 --step forward   # the network forward

Prints the events of the trace (XLA:CPU records one per executed HLO thunk; on GPU one per
kernel), grouped by name with the op numbering stripped ("fusion.123" -> "fusion", a dot keeps its
name), sorted by total time, with their share of the summed event time.
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from benchmarks.roofline import MODELS, forward_case, model_config, train_case  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.model import GRM, init_variables  # noqa: E402


def op_kind(name: str) -> str:
    """'fusion.12' -> 'fusion', 'dot.3' -> 'dot', 'convolution.1' -> 'convolution'."""
    return re.sub(r"[.\d]+$", "", name)


def profile(fn, steps: int, logdir: str) -> dict:
    """{event name: (total seconds, count)} over ``steps`` calls of ``fn`` (device/XLA planes only)."""
    jax.block_until_ready(fn())
    with jax.profiler.trace(logdir):
        for _ in range(steps):
            jax.block_until_ready(fn())
    files = sorted(pathlib.Path(logdir).rglob("*.xplane.pb"))
    data = jax.profiler.ProfileData.from_file(str(files[-1]))
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in data.planes:
        for line in plane.lines:
            # XLA:CPU: HLO thunks on the PjRt client's threads; GPU: kernels on the device planes
            if not (line.name.startswith("tf_XLA") or plane.name.startswith("/device:")):
                continue
            for ev in line.events:
                if "::" in ev.name or ev.name.startswith("end: "):
                    continue
                t = totals[ev.name]
                t[0] += ev.duration_ns * 1e-9
                t[1] += 1
    return dict(totals)


def main(argv=None):
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="tiny")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--step", choices=("train", "forward"), default="train",
                   help="the train step, or the network forward at inference (roofline.py's cases)")
    p.add_argument("--hlo", default=None, help="also write the optimized HLO text here (to look ops up)")
    args = p.parse_args(argv)
    cfg = model_config(args.model)
    case = train_case if args.step == "train" else forward_case
    fn, flops = case(cfg, jax.numpy.float32, args.batch, init_variables(GRM(cfg), jax.random.PRNGKey(0)))
    with tempfile.TemporaryDirectory() as tmp:
        totals = profile(fn, args.steps, tmp)
    if args.hlo:
        pathlib.Path(args.hlo).write_text(fn.compiled.as_text())
    whole = sum(s for s, _ in totals.values()) or 1.0
    print(f"{len(totals)} names, {whole / args.steps * 1e3:.1f} ms of events per step, {flops / 1e9:.1f} GFLOP")
    grouped = collections.defaultdict(lambda: [0.0, 0])
    for name, (s, n) in totals.items():
        grouped[op_kind(name)][0] += s
        grouped[op_kind(name)][1] += n
    for title, table in (("op kind", grouped), ("op", totals)):
        print(f"\n| {title} | ms per step | calls per step | share |\n|---|---|---|---|")
        for name, (s, n) in sorted(table.items(), key=lambda kv: -kv[1][0])[:args.top]:
            print(f"| {name} | {s / args.steps * 1e3:.1f} | {n / args.steps:.0f} | {100 * s / whole:.1f} % |")

if __name__ == "__main__":
    main()
