"""Input stall of the training loop: step time fed by the real pipeline vs a fixed device batch.

    python benchmarks/input_stall.py                           # sample run's CPU recipe, 0 and 2 workers
    python benchmarks/input_stall.py --workers 0,2,4 --steps 40 --json stall.json
    python benchmarks/input_stall.py --model vit_b --batch 2 --frames_from ../shared/real_sequences/truck2

Without ``--model`` the step is the sample run's (small model, small generated frames: the worst case
for a 2-core machine, where every pair the pipeline makes takes CPU time from the step). With
``--model vit_b`` (or ``vit_l``) and ``--frames_from DIR`` the step is the real network at ``--batch``
fed from a GOT-10k-layout split whose frames are the JPEGs of DIR (linked in place), official crops.

The step is the sample run's (its model, batch and data). Per worker count, blocks of ``--block``
steps alternate between (a) batches from the grain pipeline through ``DevicePrefetcher`` (read and
placed on the device in a background thread, 2 ahead, as ``grm_jax.train.loop`` does) and (b) one
fixed batch already on the device. Stall = (ms per step with real data) / (ms with the fixed batch) - 1.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from grm_jax.distributed import batch_mesh  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.model import GRM, vit_base, vit_large  # noqa: E402
from grm_jax.run_config import RunConfig  # noqa: E402
from grm_jax.train import optimizer as opt_lib, sample_run, state as state_lib, step as step_lib  # noqa: E402
from grm_jax.train.loop import DEVICE_PREFETCH  # noqa: E402
from grm_jax.train.prefetch import DevicePrefetcher  # noqa: E402


def measure(run: RunConfig, workers: int, steps: int, block: int) -> dict:
    from data_pipelines.pipeline import make_train_iterator  # noqa: PLC0415

    mesh = batch_mesh(jax.local_devices()[:1])
    model = GRM(run.model)
    tx, lr_fn = opt_lib.make_optimizer(run.train, 100)
    state = state_lib.create_state(model, tx, jax.random.PRNGKey(0), mesh)
    fn = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, donate=True)
    batch = run.train.batch_size
    host = make_train_iterator(run, batch, seed=0, num_workers=workers, num_threads=1)
    feed = DevicePrefetcher(host, lambda b: step_lib.put_batch(b, mesh, batch), DEVICE_PREFETCH)
    try:
        fixed = next(feed)
        state, m = fn(state, fixed)  # compile
        jax.block_until_ready(m)
        for _ in range(3):  # let the workers fill their buffers
            state, m = fn(state, next(feed))
        jax.block_until_ready(m)
        times = {"real": [], "fixed": []}
        done = 0
        while done < steps:
            for kind in ("real", "fixed"):
                t0 = time.perf_counter()
                for _ in range(block):
                    state, m = fn(state, next(feed) if kind == "real" else fixed)
                jax.block_until_ready(m)
                times[kind].append((time.perf_counter() - t0) / block)
            done += block
    finally:
        feed.close()
    real, fix = statistics.median(times["real"]), statistics.median(times["fixed"])
    return {"workers": workers, "ms_real": 1e3 * real, "ms_fixed": 1e3 * fix, "stall": real / fix - 1,
            "blocks": {k: [1e3 * t for t in v] for k, v in times.items()}}


def real_frames_run(base: RunConfig, model: str, batch: int, frames_from: str, root: pathlib.Path) -> RunConfig:
    """``base`` training ``model`` at ``batch`` on a GOT-10k layout of ``frames_from``'s JPEGs in ``root``."""
    import dataclasses  # noqa: PLC0415

    sys.path.insert(0, str(REPO / "benchmarks"))
    from pipeline_speed import make_got10k_layout  # noqa: PLC0415

    layout = make_got10k_layout(root, sequences=4, frames=60, frames_from=frames_from)
    data = dataclasses.replace(base.data, datasets=("got10k_train_all",), ratios=(1.0,),
                               roots={**base.data.roots, "got10k": str(layout)})
    net = {"vit_b": vit_base, "vit_l": vit_large}[model]()
    return base.replace(model=net, data=data, train=dataclasses.replace(base.train, batch_size=batch))


def main(argv=None) -> list[dict]:
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--steps", type=int, default=40, help="steps per kind and worker count")
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--sample_root", default=None)
    p.add_argument("--sequences", type=int, default=None, help="generate this many training sequences (tests)")
    p.add_argument("--model", choices=["sample", "vit_b", "vit_l"], default="sample")
    p.add_argument("--batch", type=int, default=2, help="with --model vit_b / vit_l")
    p.add_argument("--frames_from", default=None, help="with --model vit_b / vit_l: a folder of JPEGs + groundtruth.txt")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if (args.model == "sample") != (args.frames_from is None):
        p.error("--frames_from goes with --model vit_b / vit_l (and they need it)")
    base = RunConfig()
    if args.sample_root:
        import dataclasses  # noqa: PLC0415

        base = base.replace(data=dataclasses.replace(base.data, roots={**base.data.roots, "sample": args.sample_root}))
    if args.sequences:
        sample_run.SAMPLE_TRAIN_SEQUENCES = args.sequences
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "sample":
            run, _ = sample_run.sample_run_config(base, jax.default_backend(), 1, 1)
            what = "the sample run"
        else:
            run, what = real_frames_run(base, args.model, args.batch, args.frames_from, pathlib.Path(tmp)), args.model
        rows = [measure(run, int(w), args.steps, args.block) for w in args.workers.split(",")]
    load = os.getloadavg()
    print(f"train step of {what} (batch {run.train.batch_size}, dim {run.model.embed_dim}, search "
          f"{run.model.search_size}), {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, load {load[0]:.1f}\n")
    print("| grain workers | ms/step, real data (prefetched) | ms/step, fixed device batch | input stall |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['ms_real']:.1f} | {r['ms_fixed']:.1f} | {100 * r['stall']:+.1f} % |")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"rows": rows, "load_average": load}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
