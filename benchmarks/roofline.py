"""Roofline of the GRM forward and train step: time, FLOPs (XLA cost analysis), matmul peak, fraction.

    python benchmarks/roofline.py                                  # tiny fixture-sized model (seconds)
    python benchmarks/roofline.py --model vit_b --batches 2,8      # ViT-B/16 256 on this CPU (minutes)
    python benchmarks/roofline.py --model vit_b --batches 2 --dtypes float32,bfloat16 --json roof.json
    python benchmarks/speed.py --roofline --model vit_b ...        # the same, from the speed benchmark

For every (batch, dtype):
* forward: the jitted network forward (``model.apply``, inference mode, 'masked' attention as
  training uses) on fixed device inputs;
* train: the real train step (``grm_jax.train.step.make_train_step``: forward in training mode,
  loss, gradients, global-norm clip, AdamW over the three groups), state donated, fixed device batch;
* peak: GEMM probes of the shapes that dominate the network at that batch, (B*N, D) x (D, 3D) (qkv),
  (B*N, D) x (D, 4D) (MLP fc1) and (B*N, 4D) x (4D, D) (fc2), plain 2-D dots in the same dtype, and a
  2048^3 square GEMM; the peak is the fastest of them (median time).

Columns: median ms over ``--repeats`` interleaved rounds (forward, train, probes measured in turn
so that load from other jobs hits all alike; block_until_ready; warmed up), pairs/s = batch / median,
GFLOP of the compiled executable from ``compiled.cost_analysis()['flops']`` (XLA counts a
multiply-add as 2 FLOPs), achieved GFLOP/s and its fraction of the measured peak (the fastest of the
probes). Prints a markdown table; ``--json`` writes everything plus the load average.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
import resource
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.model import GRM, ModelConfig, init_variables, vit_base, vit_large  # noqa: E402

# The tiny model: the fixture's dimensions (dim 192, depth 4) at the fixture's crop sizes.
TINY = ModelConfig(embed_dim=192, depth=4, num_heads=3, head_channels=32, template_size=128, search_size=256,
                   predictor_hidden=(64, 32), divide_layers=(1, 2, 3), drop_path_rate=0.1)


# Smoke-test size (seconds to compile).
MICRO = ModelConfig(embed_dim=64, depth=2, num_heads=2, head_channels=16, template_size=32, search_size=64,
                    predictor_hidden=(32, 16), divide_layers=(1,), drop_path_rate=0.1)
MODELS = {"micro": lambda: MICRO, "tiny": lambda: TINY, "vit_b": vit_base, "vit_l": vit_large}


def model_config(name: str) -> ModelConfig:
    cfg = MODELS[name]()
    return cfg.replace(attention="masked")


def executable_flops(compiled) -> float:
    """FLOPs of a compiled executable from XLA's cost analysis (a dict, or a list of one dict)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def cpu_flags() -> str:
    """'AVX-512' / 'AVX2' / '?' from /proc/cpuinfo (Linux)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    return "AVX-512" if "avx512f" in text else "AVX2" if "avx2" in text else "?"


def measured_call(fn) -> dict:
    """One blocking call of ``fn``: wall seconds ``s``, CPU seconds of this process (all threads)
    ``cpu_s``, of which in the kernel ``sys_s``, and minor page faults ``faults``."""
    r0, t0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    t1, c1, r1 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    return {"s": t1 - t0, "cpu_s": c1 - c0, "sys_s": r1.ru_stime - r0.ru_stime, "faults": r1.ru_minflt - r0.ru_minflt}


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one blocking call."""
    cost = measured_call(fn)
    return cost["s"], cost["cpu_s"]


def gemm_probe(m: int, k: int, n: int, dtype, min_flops: float = 2e9):
    """(callable running one (r*m, k) x (k, n) GEMM, its FLOPs), r as large as makes ``min_flops`` (so
    call overhead does not count on small shapes). A plain 2-D ``dot``, as the network's dense layers
    are: XLA:CPU gives it the same library kernel (a YNNPACK fusion)."""
    r = max(1, int(np.ceil(min_flops / (2.0 * m * k * n))))
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(r * m, k)), dtype)
    b = jnp.asarray(rng.normal(size=(k, n)), dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=dtype))
    compiled = f.lower(a, b).compile()
    return (lambda: compiled(a, b)), 2.0 * r * m * k * n


def network_gemms(cfg: ModelConfig, batch: int) -> dict[str, tuple[int, int, int]]:
    """The dense layers that hold most of the FLOPs, as (m, k, n) at ``batch``: qkv, MLP fc1, fc2."""
    tokens = batch * (cfg.num_template_tokens + cfg.num_search_tokens)
    d, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
    return {f"qkv B={batch}": (tokens, d, 3 * d), f"fc1 B={batch}": (tokens, d, hidden),
            f"fc2 B={batch}": (tokens, hidden, d)}


def forward_case(cfg: ModelConfig, dtype, batch: int, variables):
    """(callable, FLOPs) of the jitted network forward at ``batch``."""
    model = GRM(cfg, dtype=dtype)
    rng = np.random.default_rng(0)
    t = jnp.asarray(rng.normal(size=(batch, cfg.template_size, cfg.template_size, 3)), jnp.float32)
    s = jnp.asarray(rng.normal(size=(batch, cfg.search_size, cfg.search_size, 3)), jnp.float32)
    f = jax.jit(lambda v, a, b: model.apply(v, a, b)["score_map"])
    compiled = f.lower(variables, t, s).compile()

    def run():
        return compiled(variables, t, s)

    run.compiled = compiled
    return run, executable_flops(compiled)


def random_train_batch(cfg: ModelConfig, batch: int, mesh) -> dict:
    """A fixed training batch on ``mesh``: random NHWC template / search crops (float32), one
    centred box (normalized x, y, w, h = 0.3) per pair and its CenterNet heatmap."""
    from data_pipelines.processing import generate_heatmap  # noqa: PLC0415
    from grm_jax.train import step as step_lib  # noqa: PLC0415

    rng = np.random.default_rng(0)
    boxes = np.tile(np.array([[0.3, 0.3, 0.3, 0.3]], np.float32), (batch, 1))
    host = {"template": rng.normal(size=(batch, cfg.template_size, cfg.template_size, 3)).astype(np.float32),
            "search": rng.normal(size=(batch, cfg.search_size, cfg.search_size, 3)).astype(np.float32),
            "search_box": boxes, "heatmap": generate_heatmap(boxes, cfg.search_size, cfg.patch_size)}
    return step_lib.put_batch(host, mesh)


def train_case(cfg: ModelConfig, dtype, batch: int, variables):
    """(callable running one train step on a fixed device batch, FLOPs). The state is donated and
    carried from call to call, as in the training loop."""
    from grm_jax.distributed import batch_mesh  # noqa: PLC0415
    from grm_jax.run_config import TrainConfig  # noqa: PLC0415
    from grm_jax.train import optimizer as opt_lib, state as state_lib, step as step_lib  # noqa: PLC0415

    model = GRM(cfg, dtype=dtype)
    tx, lr_fn = opt_lib.make_optimizer(TrainConfig(), steps_per_epoch=1000)
    mesh = batch_mesh(jax.local_devices()[:1])
    shardings = state_lib.state_shardings(state_lib.abstract_state(model, tx), mesh, False)
    state = state_lib.create_state(model, tx, jax.random.PRNGKey(0), mesh, False, variables=variables)
    fn = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, state_sharding=shardings, donate=True)
    dev = random_train_batch(cfg, batch, mesh)
    compiled = fn.lower(state, dev).compile()
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], dev)
        return metrics

    run.compiled = compiled
    return run, executable_flops(compiled)


def measure(model_name: str, batches, dtypes, repeats: int, peak_square: int = 2048) -> dict:
    """Every (batch, dtype) case, interleaved; returns {'meta', 'rows', 'peaks'}."""
    cfg = model_config(model_name)
    variables = init_variables(GRM(cfg), jax.random.PRNGKey(0))
    cases, probes = {}, {}
    for name in dtypes:
        dt = jnp.dtype(name)
        probes[(name, "square")] = gemm_probe(peak_square, peak_square, peak_square, dt)
        for b in batches:
            cases[(name, b, "forward")] = forward_case(cfg, dt, b, variables)
            cases[(name, b, "train")] = train_case(cfg, dt, b, variables)
            for label, (m, k, n) in network_gemms(cfg, b).items():
                probes[(name, label)] = gemm_probe(m, k, n, dt)
    everything = {**cases, **probes}
    for fn, _ in everything.values():  # warm-up (the train step also settles its donated state)
        _timed(fn)
        _timed(fn)
    times = {k: [] for k in everything}
    for _ in range(repeats):
        for k, (fn, _) in everything.items():
            times[k].append(_timed(fn))
    med = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    peaks = {k: probes[k][1] / med[k] / 1e9 for k in probes}  # GFLOP/s
    peaks_cpu = {k: probes[k][1] / cpu[k] / 1e9 for k in probes}  # GFLOP per CPU-second
    rows = []
    for (name, b, kind), (_, flops) in cases.items():
        mine = [(name, "square")] + [(name, label) for label in network_gemms(cfg, b)]
        probe = max(mine, key=lambda k: peaks[k])
        probe_cpu = max(mine, key=lambda k: peaks_cpu[k])
        k = (name, b, kind)
        achieved = flops / med[k] / 1e9
        rows.append({"step": kind, "dtype": name, "batch": b, "ms_median": 1e3 * med[k],
                     "ms_all": [1e3 * t for t, _ in times[k]], "pairs_s": b / med[k],
                     "gflop": flops / 1e9, "gflop_s": achieved, "peak_gflop_s": peaks[probe],
                     "fraction": achieved / peaks[probe], "cpu_ms_median": 1e3 * cpu[k],
                     "fraction_cpu_time": flops / cpu[k] / 1e9 / peaks_cpu[probe_cpu]})
    return {"meta": meta(model_name, cfg, repeats), "rows": rows,
            "peaks": {f"{k[0]} {k[1]}": v for k, v in peaks.items()},
            "peaks_per_cpu_s": {f"{k[0]} {k[1]}": v for k, v in peaks_cpu.items()}}


def meta(model_name, cfg, repeats) -> dict:
    dev = jax.local_devices()[0]
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "jax": jax.__version__,
            "backend": jax.default_backend(), "device_kind": dev.device_kind, "cpus": os.cpu_count(),
            "cpu_flags": cpu_flags() if dev.platform == "cpu" else None,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "model": model_name, "dims": f"dim {cfg.embed_dim}, depth {cfg.depth}, search {cfg.search_size}",
            "repeats": repeats}


def markdown(out: dict) -> str:
    m = out["meta"]
    flags = f", {m['cpu_flags']}" if m["cpu_flags"] else ""
    load = ", load average " + "/".join(f"{x:.1f}" for x in m["load_average"]) if m["load_average"] else ""
    lines = [f"{m['device_kind']} ({m['backend']}{flags}), {m['cpus']} CPUs, jax {m['jax']}, {m['date']}; "
             f"model {m['model']} ({m['dims']}); {m['repeats']} interleaved repeats{load}", "",
             "| step | dtype | batch | ms (median) | pairs/s | GFLOP (XLA) | GFLOP/s | peak GFLOP/s | of peak "
             "| CPU ms (median) | of peak, CPU time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        lines.append(f"| {r['step']} | {r['dtype']} | {r['batch']} | {r['ms_median']:.1f} | {r['pairs_s']:.3f} | "
                     f"{r['gflop']:.1f} | {r['gflop_s']:.1f} | {r['peak_gflop_s']:.1f} | {100 * r['fraction']:.0f} % "
                     f"| {r['cpu_ms_median']:.1f} | {100 * r['fraction_cpu_time']:.0f} % |")
    lines += ["", "GEMM probes (GFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in out["peaks"].items()),
              "GEMM probes (GFLOP per CPU-second): "
              + ", ".join(f"{k} {v:.1f}" for k, v in out["peaks_per_cpu_s"].items()),
              "'of peak, CPU time' divides FLOPs per CPU-second of this process by the probe's: on a machine shared "
              "with other jobs it is the steadier figure (wall-clock fractions move with the load)."]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="tiny")
    p.add_argument("--batches", default="2", help="comma list of batch sizes")
    p.add_argument("--dtypes", default="float32", help="comma list: float32,bfloat16")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument("--square", type=int, default=2048, help="side of the square GEMM probe")
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    args = parse_args(argv)
    batches = [int(x) for x in args.batches.split(",") if x.strip()]
    out = measure(args.model, batches, args.dtypes.split(","), args.repeats, args.square)
    print(markdown(out), flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
