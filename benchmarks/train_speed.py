"""Training throughput: jitted train-step pairs/s on a synthetic batch (tiny and ViT-B GRM) and
input-pipeline pairs/s on the bundled sample data; printed as a table.

    python benchmarks/train_speed.py                        # tiny + vit_b, batch 2, 3 timed steps
    python benchmarks/train_speed.py --models vit_b --batch 8 --steps 5 --bf16
    python benchmarks/train_speed.py --pipeline_batches 20 --pipeline_workers 0,2

The step is the real one (forward in training mode, loss, gradients, clip + AdamW); the batch is
split over all local devices (so --batch must divide by their number). Compilation is reported
separately and excluded from pairs/s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from grm_jax.model.config import ModelConfig  # noqa: E402
from grm_jax.model.grm import GRM  # noqa: E402
from grm_jax.train import optimizer as opt_lib  # noqa: E402
from grm_jax.train import state as state_lib  # noqa: E402
from grm_jax.train import step as step_lib  # noqa: E402

MODELS = {
    "tiny": ModelConfig(embed_dim=192, depth=4, num_heads=3, head_channels=64, divide_layers=(1, 2, 3),
                        drop_path_rate=0.0),                                     # configs/grm_tiny_cpu.py
    "vit_b": ModelConfig(),                                                      # GRM / GRM-GOT
    "vit_l320": ModelConfig(embed_dim=1024, depth=24, num_heads=16, search_size=320),  # GRM-L320
}


def bench_step(name: str, batch: int, steps: int, bf16: bool, shard_params: bool) -> dict:
    cfg = MODELS[name]
    model = GRM(cfg, dtype=jnp.bfloat16) if bf16 else GRM(cfg)
    tx, lr_fn = opt_lib.make_optimizer(opt_lib.OptimizerSpec(steps_per_epoch=1000))
    mesh = state_lib.make_mesh(jax.local_devices())
    shardings = state_lib.state_shardings(state_lib.abstract_state(model, tx), mesh, shard_params)
    t0 = time.perf_counter()
    state = state_lib.create_state(model, tx, jax.random.PRNGKey(0), mesh, shard_params)
    jax.block_until_ready(state)
    t_init = time.perf_counter() - t0
    fn = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, state_sharding=shardings,
                                  donate=jax.default_backend() != "cpu")
    host = step_lib.synthetic_batch(cfg, batch, seed=0)
    dev_batch = step_lib.put_batch(host, mesh)
    t0 = time.perf_counter()
    state, metrics = fn(state, dev_batch)
    jax.block_until_ready(metrics)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = fn(state, dev_batch)
    jax.block_until_ready(metrics)
    dt = (time.perf_counter() - t0) / steps
    return {"what": f"train step {name}{' bf16' if bf16 else ''}", "batch": batch,
            "pairs_s": batch / dt, "s_per_step": dt, "compile_s": t_compile, "init_s": t_init}


def bench_pipeline(batch: int, batches: int, workers: int, search: int, template: int) -> dict:
    import ml_collections  # noqa: PLC0415

    from data_pipelines.pipeline import default_data_config, make_train_iterator  # noqa: PLC0415

    cfg = default_data_config()
    cfg.datasets, cfg.ratios = ["sample"], [1.0]
    cfg.search.size, cfg.template.size = search, template
    cfg.num_workers = workers
    it = make_train_iterator(ml_collections.ConfigDict(cfg), batch_size=batch, seed=0, num_workers=workers)
    t0 = time.perf_counter()
    next(it)  # start-up (sample data generation on first use, workers)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = (time.perf_counter() - t0) / batches
    close = getattr(it, "close", None)
    if callable(close):
        close()
    return {"what": f"pipeline sample S{search} workers={workers}", "batch": batch, "pairs_s": batch / dt,
            "s_per_step": dt, "compile_s": float("nan"), "init_s": t_first}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,vit_b", help=f"comma list of {sorted(MODELS)} ('' = none)")
    p.add_argument("--batch", type=int, default=2, help="global batch of the train step")
    p.add_argument("--steps", type=int, default=3, help="timed steps after the compile step")
    p.add_argument("--bf16", action="store_true", help="bfloat16 compute (params float32)")
    p.add_argument("--shard_params", action="store_true", help="FSDP-shard large weights over the devices")
    p.add_argument("--pipeline_batch", type=int, default=8)
    p.add_argument("--pipeline_batches", type=int, default=10, help="0 = skip the pipeline benchmark")
    p.add_argument("--pipeline_workers", default="0", help="comma list of worker-process counts")
    args = p.parse_args(argv)
    from absl import flags  # noqa: PLC0415  (grain worker processes read absl flags)

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()

    rows = []
    for name in [m for m in args.models.split(",") if m]:
        rows.append(bench_step(name, args.batch, args.steps, args.bf16, args.shard_params))
        print(f"  done: {rows[-1]['what']}", flush=True)
    if args.pipeline_batches > 0:
        for w in [int(x) for x in args.pipeline_workers.split(",") if x != ""]:
            rows.append(bench_pipeline(args.pipeline_batch, args.pipeline_batches, w, 256, 128))
            print(f"  done: {rows[-1]['what']}", flush=True)

    dev = jax.local_devices()
    print(f"\n{len(dev)} x {dev[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} CPUs, "
          f"jax {jax.__version__}")
    head = f"| {'what':<34} | {'batch':>5} | {'pairs/s':>8} | {'s/step':>7} | {'compile s':>9} | {'init s':>6} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['what']:<34} | {r['batch']:>5} | {r['pairs_s']:>8.2f} | {r['s_per_step']:>7.3f} | "
              f"{r['compile_s']:>9.1f} | {r['init_s']:>6.1f} |")
    return rows


if __name__ == "__main__":
    main()
