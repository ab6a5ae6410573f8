"""bfloat16 training (``train.bf16``) against float32: loss curves on the same batches, and step time.

    python benchmarks/bf16_curve.py                         # 200 steps of the sample run's CPU recipe
    python benchmarks/bf16_curve.py --steps 1000 --json bf16.json

Both runs start from the same random initialisation and see the same batches (the sample run's
generated data and crops, read once, in-process), with the sample run's optimizer settings; the
steps of the two runs alternate, so their times are comparable. bfloat16 is the compute dtype of
the network (``GRM(dtype=bfloat16)``); parameters, optimizer state, loss and softmax stay float32.
Prints the windowed mean loss of both runs at several steps, the relative gap, and ms per step.
"""
from __future__ import annotations

import argparse
import dataclasses
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from grm_jax.distributed import batch_mesh  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.model import GRM  # noqa: E402
from grm_jax.run_config import RunConfig  # noqa: E402
from grm_jax.train import optimizer as opt_lib, sample_run, state as state_lib, step as step_lib  # noqa: E402


def sample_batches(run: RunConfig, steps: int) -> list[dict]:
    """``steps`` host batches of the run's training stream (in this process, no workers)."""
    from data_pipelines.pipeline import make_train_iterator  # noqa: PLC0415

    it = make_train_iterator(run, run.train.batch_size, seed=run.train.seed, num_workers=0, num_threads=1)
    return [{k: np.asarray(v) for k, v in next(it).items() if k in step_lib.STEP_KEYS} for _ in range(steps)]


def curves(run: RunConfig, batches: list[dict], dtypes) -> dict:
    """{dtype: {'loss': [...], 'iou': [...], 'ms': [...]}}; the dtypes' steps alternate."""
    mesh = batch_mesh(jax.local_devices()[:1])
    steps_per_epoch = max(run.data.samples_per_epoch // run.train.batch_size, 1)
    tx, lr_fn = opt_lib.make_optimizer(run.train, steps_per_epoch)
    runs = {}
    for name in dtypes:
        model = GRM(run.model, dtype=jnp.dtype(name))
        state = state_lib.create_state(model, tx, jax.random.PRNGKey(run.train.seed), mesh)
        runs[name] = {"state": state, "fn": step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, donate=True)}
    out = {name: {"loss": [], "iou": [], "ms": []} for name in dtypes}
    for batch in batches:
        dev = step_lib.put_batch(batch, mesh)
        for name, r in runs.items():
            t0 = time.perf_counter()
            r["state"], metrics = r["fn"](r["state"], dev)
            metrics = jax.device_get(metrics)
            out[name]["ms"].append(1e3 * (time.perf_counter() - t0))
            out[name]["loss"].append(float(metrics["loss"]))
            out[name]["iou"].append(float(metrics["iou"]))
    return out


def summary(res: dict, ref: str, other: str, window: int) -> list[dict]:
    """Windowed means at the checkpoints 1, 1/4, 1/2, 3/4, end of the run."""
    n = len(res[ref]["loss"])
    rows = []
    for end in sorted({min(window, n), n // 4, n // 2, 3 * n // 4, n}):
        if end < 1:
            continue
        sl = slice(max(0, end - window), end)
        a, b = float(np.mean(res[ref]["loss"][sl])), float(np.mean(res[other]["loss"][sl]))
        rows.append({"steps": f"{sl.start + 1}-{end}", ref: a, other: b, "relative_gap": (b - a) / a,
                     f"iou_{ref}": float(np.mean(res[ref]["iou"][sl])), f"iou_{other}": float(np.mean(res[other]["iou"][sl]))})
    return rows


def main(argv=None) -> dict:
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--window", type=int, default=20, help="steps averaged per row")
    p.add_argument("--sample_root", default=None, help="sample-data folder (default: the sample run's)")
    p.add_argument("--sequences", type=int, default=None, help="generate this many training sequences (tests)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    base = RunConfig()
    if args.sample_root:
        base = base.replace(data=dataclasses.replace(base.data, roots={**base.data.roots, "sample": args.sample_root}))
    if args.sequences:
        sample_run.SAMPLE_TRAIN_SEQUENCES = args.sequences
    run, _ = sample_run.sample_run_config(base, jax.default_backend(), 1, 1)
    batches = sample_batches(run, args.steps)
    res = curves(run, batches, ("float32", "bfloat16"))
    rows = summary(res, "float32", "bfloat16", args.window)
    ms = {k: statistics.median(v["ms"][1:] or v["ms"]) for k, v in res.items()}
    load = os.getloadavg()
    print(f"{args.steps} steps of the sample run ({jax.default_backend()}, batch {run.train.batch_size}, model dim "
          f"{run.model.embed_dim} depth {run.model.depth}, search {run.model.search_size}), same init and batches; "
          f"load average {load[0]:.1f}\n")
    print("| steps | loss float32 | loss bfloat16 | relative gap | IoU float32 | IoU bfloat16 |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['steps']} | {r['float32']:.4f} | {r['bfloat16']:.4f} | {100 * r['relative_gap']:+.1f} % | "
              f"{r['iou_float32']:.3f} | {r['iou_bfloat16']:.3f} |")
    print(f"\nms per step (median, compile excluded): float32 {ms['float32']:.1f}, bfloat16 {ms['bfloat16']:.1f} "
          f"({ms['float32'] / ms['bfloat16']:.2f}x)")
    out = {"steps": args.steps, "rows": rows, "ms_median": ms, "curves": res, "load_average": load}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
