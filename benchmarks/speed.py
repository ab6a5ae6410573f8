"""GRM speed, one command: forward latency, end-to-end tracking, batched evaluation, training, compile.

    python benchmarks/speed.py                                   # tiny fixture model, CPU-sized (minutes)
    python benchmarks/speed.py --model vit_b --json speed.json   # ViT-B/16 256, random weights
    python benchmarks/speed.py --model vit_b --batches 1,8,32,128 --dtypes float32,bfloat16   # GPU/TPU
    python benchmarks/speed.py --model vit_b --breakdown         # where one frame's time goes
    python benchmarks/speed.py --roofline --model vit_b --batches 2,8   # forward / train step vs GEMM peak

``--roofline`` runs ``benchmarks/roofline.py`` with the other arguments (its own options: time per
step, pairs/s, XLA cost-analysis FLOPs, a measured GEMM peak and the fraction of it).

One row per (dtype, attention) variant; the columns:
* forward ms: the jitted tracking step (normalize, network, Hann window, box decode) at batch
  ``--forward_batch`` on fixed device inputs, median and p90 over ``--repeats`` (block_until_ready);
* track fps: ``BatchedTracker`` with one slot on the first ``--frames`` frames of a real sequence,
  with JPEG decode (frame paths, decoded ahead in threads) and on frames decoded beforehand;
* B=<n> f/s: frames/s of ``BatchedTracker`` over n copies of the real sequences (with decode);
* all-dev f/s: the same at the largest B, slots sharded over all local devices;
* train pairs/s: the real train step (training always uses 'masked' attention), ``--train_batch``,
  as the training loop runs it (no donation on CPU), median of ``--train_steps`` after 5 warm-up steps;
* compile s: first call minus the median call of the forward step.
Variants are interleaved (round-robin repeats) so that machine noise hits them alike; everything
is warmed up first. ``--changes`` adds before/after ratios: attention implementations, frame
prefetch on/off, one vs two lanes. Random weights do not change the speed (the division is
pinned near half E_A with ``--threshold``); the tiny model is the converted test fixture.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from grm_jax.datasets import load_benchmark  # noqa: E402
from grm_jax.distributed import batch_mesh, batch_sharding, replicated_sharding  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.model import GRM, init_variables, vit_base, vit_large  # noqa: E402
from grm_jax.model.attention import inference_attention  # noqa: E402
from grm_jax.track.batched import BatchedTracker  # noqa: E402
from grm_jax.track.tracker import run_step  # noqa: E402
from grm_jax.track.frames import read_image  # noqa: E402

TINY_CKPT = REPO / "tests" / "fixtures" / "grm_tiny" / "GRM_ep0001.pth.tar"
SEQUENCES = pathlib.Path(os.environ.get("GRM_REAL_SEQUENCES", REPO.parent / "shared" / "real_sequences"))


@dataclasses.dataclass
class Seq:
    name: str
    frames: list
    init_box: np.ndarray

    def __len__(self):
        return len(self.frames)


def build_model(name: str):
    """tiny: the converted test fixture; vit_b / vit_l: random-weight ViT-B/16 256, ViT-L/16 320."""
    if name == "tiny":
        from convert_weights import convert_grm_checkpoint  # noqa: PLC0415

        config, variables = convert_grm_checkpoint(str(TINY_CKPT))
        return GRM(config), variables
    model = GRM(vit_base() if name == "vit_b" else vit_large())
    return model, init_variables(model, jax.random.PRNGKey(0))


def real_sequences(folder, frames: int) -> list[Seq]:
    seqs = load_benchmark("folder", folder)
    return [Seq(s.name, list(s.frames[:frames] if frames else s.frames), np.asarray(s.ground_truth[0]))
            for s in seqs]


def _track_cfg(config, precision):
    return {"search_factor": 5.0 if config.search_size == 320 else 4.0, "matmul_precision": precision}


def say(*msg) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(time.strftime("%H:%M:%S"), *msg, file=sys.stderr, flush=True)


def _percentile(xs, q):
    return float(np.percentile(np.asarray(xs), q))


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------

def forward_times(model, variables, variants, batch, repeats, threshold, precision) -> dict:
    """{variant: (median s, p90 s, compile s)} of the jitted step, variants interleaved."""
    c = model.config
    rng = np.random.default_rng(0)
    mesh = batch_mesh(jax.local_devices()[:1])  # placed like BatchedTracker's inputs: one compilation for both
    put = lambda a: jax.device_put(a, batch_sharding(mesh))
    tmpl = put(rng.integers(0, 255, (batch, c.template_size, c.template_size, 3), dtype=np.uint8))
    srch = put(rng.integers(0, 255, (batch, c.search_size, c.search_size, 3), dtype=np.uint8))
    rf = put(np.full((batch,), 2.0, np.float32))
    var = jax.device_put(variables, replicated_sharding(mesh))
    call = {v: (lambda v=v: run_step(c, v[0], precision, var, tmpl, srch, rf, threshold, v[1])[0]
                .block_until_ready()) for v in variants}
    first, times = {}, {v: [] for v in variants}
    for v in variants:
        t0 = time.perf_counter()
        call[v]()
        first[v] = time.perf_counter() - t0
        call[v]()
    for _ in range(repeats):
        for v in variants:
            t0 = time.perf_counter()
            call[v]()
            times[v].append(time.perf_counter() - t0)
    return {v: (statistics.median(times[v]), _percentile(times[v], 90),
                max(0.0, first[v] - statistics.median(times[v]))) for v in variants}


def tracking_fps(model, variables, runs: dict, repeats: int, threshold, precision) -> dict:
    """{name: frames/s} of BatchedTracker runs ``runs[name] = (tracker kwargs, sequences)``, interleaved
    over ``repeats`` (median); a 2-frame run of every tracker compiles first."""
    tcfg = _track_cfg(model.config, precision)
    trackers = {}
    for name, (kw, seqs) in runs.items():
        trackers[name] = BatchedTracker(model, variables, tcfg, threshold, **kw)
        list(trackers[name].track([Seq(s.name, s.frames[:2], s.init_box) for s in seqs]))
    fps = {name: [] for name in runs}
    for _ in range(repeats):
        for name, bt in trackers.items():
            t0 = time.perf_counter()
            n = sum(len(r.boxes) for r in bt.track(runs[name][1]))
            fps[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in fps.items()}


def copies(seqs, n: int, frames: int | None = None, decoded: dict | None = None) -> list[Seq]:
    """n sequences cycled from ``seqs`` (first ``frames`` frames; pre-decoded arrays when ``decoded``)."""
    out = []
    for i in range(n):
        s = seqs[i % len(seqs)]
        f = decoded[s.name] if decoded else s.frames
        out.append(Seq(f"{s.name}#{i}", list(f[:frames] if frames else f), s.init_box))
    return out


# Untimed steps after the compiling one. On CPU the heap keeps growing (page faults, system time)
# for about 5 steps of ViT-B until freed blocks cover a step's allocations (grm_jax.host_memory);
# from then on 0 faults per step, as in a long training run.
TRAIN_WARMUP_STEPS = 5


def train_pairs_per_s(model, dtype, batch: int, steps: int) -> tuple[float, float]:
    """(pairs/s, compile s) of the real train step on a random batch over the local devices (as many as
    divide the batch)."""
    from benchmarks.roofline import random_train_batch  # noqa: PLC0415
    from grm_jax.run_config import TrainConfig  # noqa: PLC0415
    from grm_jax.train import optimizer as opt_lib, state as state_lib, step as step_lib  # noqa: PLC0415

    cfg = model.config.replace(attention="masked")
    model = GRM(cfg, dtype=dtype)
    tx, lr_fn = opt_lib.make_optimizer(TrainConfig(), steps_per_epoch=1000)
    devices = jax.local_devices()
    mesh = batch_mesh(devices[:max(k for k in range(1, len(devices) + 1) if batch % k == 0)])
    shardings = state_lib.state_shardings(state_lib.abstract_state(model, tx), mesh, False)
    state = state_lib.create_state(model, tx, jax.random.PRNGKey(0), mesh, False)
    fn = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, state_sharding=shardings,
                                  donate=jax.default_backend() != "cpu")
    dev = random_train_batch(cfg, batch, mesh)
    t0 = time.perf_counter()
    state, metrics = fn(state, dev)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    for _ in range(TRAIN_WARMUP_STEPS):
        state, metrics = fn(state, dev)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = fn(state, dev)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times), compile_s


def breakdown(model, variables, items, variant, batch, threshold, precision) -> dict:
    """Milliseconds per frame of each stage over ``items`` tracked B at a time (profile mode: stages
    synchronized, no prefetch), and the frames/s of that run."""
    bt = BatchedTracker(model, variables, _track_cfg(model.config, precision), threshold, batch_size=batch,
                        dtype=variant[0], attention=variant[1], prefetch=0, lanes=1, profile=True)
    list(bt.track([Seq(s.name, s.frames[:2], s.init_box) for s in items]))
    bt.stats = type(bt.stats)()
    write_s = 0.0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        from grm_jax.evaluate.results import write_results  # noqa: PLC0415

        for r in bt.track(items):
            t1 = time.perf_counter()
            write_results(tmp, r.name, r.boxes, r.times)
            write_s += time.perf_counter() - t1
    wall = time.perf_counter() - t0
    st, n = bt.stats, max(bt.stats.frames, 1)
    stages = {k: getattr(st, k) for k in ("decode", "crop", "transfer", "device", "map_back")}
    stages["write"] = write_s
    stages["other"] = wall - sum(stages.values())
    return {k: 1e3 * v / n for k, v in stages.items()} | {"frames/s": n / wall}


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    cpu = jax.default_backend() == "cpu"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "vit_b", "vit_l"], default="tiny")
    p.add_argument("--attentions", default="masked,separate,fused", help="comma list of implementations")
    p.add_argument("--dtypes", default="float32" if cpu else "float32,bfloat16", help="comma list")
    p.add_argument("--forward_batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (forward and tracking)")
    p.add_argument("--sequences", default=str(SEQUENCES), help="folder of real sequences (env GRM_REAL_SEQUENCES)")
    p.add_argument("--sequence", default=None, help="the end-to-end sequence (default: the first by name)")
    p.add_argument("--frames", type=int, default=20, help="frames of the end-to-end sequence (0 = all)")
    p.add_argument("--batches", default="1,8" if cpu else "1,8,32,128", help="B of the batched columns")
    p.add_argument("--batch_frames", type=int, default=6, help="frames per sequence in the batched runs")
    p.add_argument("--train_batch", type=int, default=2, help="0 = no training column")
    p.add_argument("--train_steps", type=int, default=2)
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--precision", default="highest", help="matmul precision: highest | default")
    p.add_argument("--changes", action="store_true", help="also: prefetch on/off and 1 vs 2 lanes, interleaved")
    p.add_argument("--breakdown", action="store_true", help="also: per-stage ms per frame (batch 1 and max B)")
    p.add_argument("--json", default=None, help="write the results as JSON to this path ('-' = stdout)")
    return p.parse_args(argv)


def default_variant(variants) -> tuple[str, str]:
    """The variant the --changes / --breakdown runs use: the backend's default attention if listed."""
    attention = inference_attention()
    return next((v for v in variants if v[1] == attention), variants[0])


def measure(args) -> dict:
    model, variables = build_model(args.model)
    precision = None if args.precision == "default" else args.precision
    variants = [(d, a) for d in args.dtypes.split(",") for a in args.attentions.split(",")
                if a != "fused_cudnn" or d == "bfloat16"]  # cuDNN's kernel takes bfloat16 only
    seqs = real_sequences(args.sequences, 0)
    names = [s.name for s in seqs]
    if args.sequence and args.sequence not in names:
        raise SystemExit(f"--sequence {args.sequence!r}: not in {args.sequences} (sequences: {', '.join(names)})")
    e2e = seqs[names.index(args.sequence)] if args.sequence else seqs[0]
    e2e = Seq(e2e.name, e2e.frames[:args.frames] if args.frames else e2e.frames, e2e.init_box)
    decoded = {e2e.name: [read_image(f) for f in e2e.frames]}
    batches, one = _ints(args.batches), [jax.local_devices()[0]]
    runs = {}
    for v in variants:
        kw = {"dtype": v[0], "attention": v[1], "batch_size": 1, "devices": one}
        runs[(v, "decode")] = (kw, [e2e])
        runs[(v, "decoded")] = (kw, copies([e2e], 1, decoded=decoded))
        for b in batches:
            runs[(v, f"B={b}")] = ({**kw, "batch_size": b}, copies(seqs, b, args.batch_frames))
        if jax.local_device_count() > 1:
            runs[(v, "all")] = ({**kw, "batch_size": max(batches), "devices": None},
                                copies(seqs, max(batches), args.batch_frames))
    if args.changes:
        v = default_variant(variants)
        base = {"dtype": v[0], "attention": v[1], "batch_size": 1, "devices": one}
        for pf in (0, 2):
            runs[("change", f"prefetch={pf}")] = ({**base, "prefetch": pf}, [e2e])
        b = max(2, *batches)
        for lanes in (1, 2):
            runs[("change", f"lanes={lanes}")] = ({**base, "batch_size": b, "lanes": lanes},
                                                  copies(seqs, b, args.batch_frames))
    say(f"forward: {len(variants)} variants, batch {args.forward_batch}")
    fwd = forward_times(model, variables, variants, args.forward_batch, args.repeats, args.threshold, precision)
    say(f"tracking: {len(runs)} runs x {args.repeats} repeats")
    fps = tracking_fps(model, variables, runs, args.repeats, args.threshold, precision)
    train = {}
    if args.train_batch:
        for d in dict.fromkeys(v[0] for v in variants):
            say(f"train step {d}, batch {args.train_batch}")
            train[d] = train_pairs_per_s(model, jnp.dtype(d), args.train_batch, args.train_steps)
    dev = jax.local_devices()[0]
    rows = []
    for v in variants:
        row = {"device": f"{dev.platform}:{dev.device_kind}", "dtype": v[0], "attention": v[1],
               "batch": args.forward_batch, "forward_ms_median": 1e3 * fwd[v][0], "forward_ms_p90": 1e3 * fwd[v][1],
               "track_fps_decode": fps[(v, "decode")], "track_fps_decoded": fps[(v, "decoded")]}
        row.update({f"batched_fps_B{b}": fps[(v, f"B={b}")] for b in batches})
        row["all_devices_fps"] = fps.get((v, "all"), fps[(v, f"B={max(batches)}")])
        row["train_pairs_s"] = train[v[0]][0] if v[0] in train and v[1] == "masked" else None
        row["compile_s"] = fwd[v][2]
        rows.append(row)
    out = {"meta": meta(args, model), "rows": rows,
           "changes": {k[1]: f for k, f in fps.items() if k[0] == "change"}}
    if args.breakdown:
        say("breakdown")
        v = default_variant(variants)
        out["breakdown"] = {f"B={b}": breakdown(model, variables, copies(seqs, b, args.batch_frames) if b > 1 else [e2e],
                                                 v, b, args.threshold, precision) for b in sorted({1, max(batches)})}
    return out


def meta(args, model) -> dict:
    import flax  # noqa: PLC0415

    c = model.config
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "jax": jax.__version__,
            "flax": flax.__version__, "backend": jax.default_backend(), "local_devices": jax.local_device_count(),
            "device_kind": jax.local_devices()[0].device_kind, "cpus": os.cpu_count(), "model": args.model,
            "dims": f"dim {c.embed_dim}, depth {c.depth}, search {c.search_size}", "frames": args.frames,
            "batch_frames": args.batch_frames, "repeats": args.repeats, "precision": args.precision,
            "weights": "converted test fixture" if args.model == "tiny" else "random"}


def _fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(out: dict) -> str:
    m, rows = out["meta"], out["rows"]
    lines = [f"{m['device_kind']} ({m['backend']}, {m['local_devices']} local device(s)), {m['cpus']} CPUs, "
             f"jax {m['jax']}, flax {m['flax']}, {m['date']}; model {m['model']} ({m['dims']}, {m['weights']} "
             f"weights); precision {m['precision']}; {m['repeats']} interleaved repeats", ""]
    bcols = [k for k in rows[0] if k.startswith("batched_fps_B")]
    head = (["device", "dtype", "attention", "batch", "fwd ms med", "fwd ms p90", "track fps (decode)",
             "track fps (decoded)"] + [f"B={k[13:]} f/s" for k in bcols]
            + ["all-dev f/s", "train pairs/s", "compile s"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["device"], r["dtype"], r["attention"], str(r["batch"]), _fmt(r["forward_ms_median"]),
                 _fmt(r["forward_ms_p90"]), _fmt(r["track_fps_decode"], 2), _fmt(r["track_fps_decoded"], 2)]
        cells += [_fmt(r[k], 2) for k in bcols]
        cells += [_fmt(r["all_devices_fps"], 2), _fmt(r["train_pairs_s"], 2), _fmt(r["compile_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    ref = {r["attention"]: r for r in rows if r["dtype"] == rows[0]["dtype"]}
    if "masked" in ref and len(ref) > 1:
        lines += ["", "| vs masked (same dtype) | forward | track fps (decode) |", "|---|---|---|"]
        for a, r in ref.items():
            lines.append(f"| {a} | {ref['masked']['forward_ms_median'] / r['forward_ms_median']:.3f}x | "
                         f"{r['track_fps_decode'] / ref['masked']['track_fps_decode']:.3f}x |")
    ch = out.get("changes") or {}
    for before, after in (("prefetch=0", "prefetch=2"), ("lanes=1", "lanes=2")):
        if before in ch:
            lines.append(f"\n{after} vs {before}: {ch[after]:.2f} vs {ch[before]:.2f} frames/s "
                         f"({ch[after] / ch[before]:.3f}x)")
    for name, stages in (out.get("breakdown") or {}).items():
        keys = [k for k in stages if k != "frames/s"]
        lines += ["", f"Breakdown {name} (ms per frame, stages synchronized, no prefetch; "
                  f"{stages['frames/s']:.2f} frames/s):", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(f"{stages[k]:.2f}" for k in keys) + " |"]
    return "\n".join(lines)


def main(argv=None):
    keep_freed_memory()  # as launch.main does: XLA's buffers reuse freed heap memory
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--roofline" in argv:
        from benchmarks import roofline  # noqa: PLC0415

        return roofline.main([a for a in argv if a != "--roofline"])
    args = parse_args(argv)
    out = measure(args)
    print(markdown(out), flush=True)
    if args.json:
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            pathlib.Path(args.json).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
