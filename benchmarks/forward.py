"""Forward latency of the GRM network: masked vs separate attention, float32 vs bfloat16.

    python benchmarks/forward.py                      # ViT-B/16 256, batch 1 and 32
    python benchmarks/forward.py --batch 1 --repeats 50 --model vit_large

Random weights (latency does not depend on values, except through the division: the
threshold is chosen so about half the search tokens are in E_A). Each case is jitted,
warmed up, timed with block_until_ready; the table shows the median and the spread.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from grm_jax.model import GRM, init_variables, vit_base, vit_large


def time_case(config, batch, dtype, repeats, warmup):
    model = GRM(config, dtype=dtype)
    variables = init_variables(model, jax.random.PRNGKey(0))
    template = jax.random.normal(jax.random.PRNGKey(1), (batch, config.template_size, config.template_size, 3))
    search = jax.random.normal(jax.random.PRNGKey(2), (batch, config.search_size, config.search_size, 3))
    forward = jax.jit(lambda v, t, s: model.apply(v, t, s, 0.5)["boxes"])
    for _ in range(warmup):
        forward(variables, template, search).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(variables, template, search).block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["vit_base", "vit_large"], default="vit_base")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--attention", nargs="+", default=["masked", "separate"])
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=None, help="default: 20 on GPU/TPU, 3 on CPU")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    repeats = args.repeats or (3 if on_cpu else 20)
    base = vit_base() if args.model == "vit_base" else vit_large()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), model {args.model} "
          f"search {base.search_size}, repeats {repeats}")
    header = f"| batch | attention | dtype | median ms | min ms | max ms | frames/s |"
    print(header + "\n|---|---|---|---|---|---|---|")
    for batch in args.batch:
        for attention in args.attention:
            for dtype_name in args.dtype:
                config = base.replace(attention=attention)
                med, lo, hi = time_case(config, batch, jnp.dtype(dtype_name), repeats, args.warmup)
                print(f"| {batch} | {attention} | {dtype_name} | {med * 1e3:.1f} | {lo * 1e3:.1f} | "
                      f"{hi * 1e3:.1f} | {batch / med:.1f} |", flush=True)


if __name__ == "__main__":
    main()
