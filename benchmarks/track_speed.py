"""Tracking speed (frames/s) of the full tracker on the real sequences: batch 1 and batched.

    python benchmarks/track_speed.py                              # tiny fixture model (converted)
    python benchmarks/track_speed.py --model vit_base --batch 8   # random-weight ViT-B/16 256
    python benchmarks/track_speed.py --checkpoint out/grm_got --max_frames 0   # a real model, all frames

Rows (frames/s; the paper's 45 fps is ViT-B 256, batch 1, RTX 3090, network + tracker):
* step only:        the single jitted device call (normalize, network, Hann, decode) on fixed
                    inputs, block_until_ready, median over repeats; batch 1 and batch B (per frame).
* batch 1, decoded: Tracker.track on frames already decoded in memory (crop + device + map-back),
                    median per-frame time after warm-up.
* batch 1 + decode: the same, including reading the JPEG (cv2.imread + BGR->RGB).
* batched B, decoded / + decode: BatchedTracker over B sequences (the real ones, cycled to fill
                    the batch), total frames / wall time (excluding the compile warm-up).
Frames are read from ../shared/real_sequences (research use only; never copied).
"""
from __future__ import annotations

import argparse
import dataclasses
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

from grm_jax.datasets import load_benchmark  # noqa: E402
from grm_jax.model import GRM, init_variables, vit_base, vit_large  # noqa: E402
from grm_jax.track.batched import BatchedTracker  # noqa: E402
from grm_jax.track.tracker import Tracker, run_step  # noqa: E402
from grm_jax.track.video import read_image  # noqa: E402

DEFAULT_SEQUENCES = REPO.parent / "shared" / "real_sequences"
TINY_CKPT = REPO / "tests" / "fixtures" / "grm_tiny" / "GRM_ep0001.pth.tar"


@dataclasses.dataclass
class Seq:
    name: str
    frames: list
    init_box: np.ndarray

    def __len__(self):
        return len(self.frames)


def build_model(args):
    if args.checkpoint:
        from grm_jax import load_model

        return load_model(args.checkpoint)
    if args.model == "tiny":
        from convert_weights import convert_grm_checkpoint

        config, variables = convert_grm_checkpoint(str(TINY_CKPT))
        return GRM(config), variables
    config = vit_base() if args.model == "vit_base" else vit_large()
    model = GRM(config)
    return model, init_variables(model, jax.random.PRNGKey(0))


def _block(x):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), x)


def step_only(model, variables, batch, repeats, threshold, precision):
    c = model.config
    rng = np.random.default_rng(0)
    tmpl = rng.integers(0, 255, (batch, c.template_size, c.template_size, 3), dtype=np.uint8)
    srch = rng.integers(0, 255, (batch, c.search_size, c.search_size, 3), dtype=np.uint8)
    rf = np.full((batch,), 2.0)
    tmpl_d, srch_d, var_d = jax.device_put(tmpl), jax.device_put(srch), jax.device_put(variables)
    dtype = getattr(model, "dtype", jnp.float32)
    for _ in range(3):
        _block(run_step(c, dtype, precision, var_d, tmpl_d, srch_d, rf, threshold))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _block(run_step(c, dtype, precision, var_d, tmpl_d, srch_d, rf, threshold))
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def batch1(model, variables, seqs, decoded, threshold, track_cfg, warmup=3):
    """Median per-frame fps of Tracker.track over all sequences (first `warmup` frames not timed)."""
    tracker = Tracker(model, variables, track_cfg, threshold)
    times = []
    for s in seqs:
        frames = [read_image(f) for f in s.frames] if decoded else s.frames
        first = frames[0] if decoded else read_image(frames[0])
        tracker.initialize(first, s.init_box)
        for k, f in enumerate(frames[1:]):
            t0 = time.perf_counter()
            tracker.track(f if decoded else read_image(f))
            if k >= warmup or s is not seqs[0]:
                times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times), len(times)


def batched(model, variables, seqs, batch, decoded, threshold, track_cfg):
    """Frames/s of BatchedTracker over `batch` sequences cycled from seqs (compile excluded)."""
    items = [seqs[i % len(seqs)] for i in range(batch)]
    if decoded:
        items = [Seq(f"{s.name}#{i}", [read_image(f) for f in s.frames], s.init_box) for i, s in enumerate(items)]
    else:
        items = [Seq(f"{s.name}#{i}", s.frames, s.init_box) for i, s in enumerate(items)]
    tracker = BatchedTracker(model, variables, track_cfg, threshold, batch_size=batch, shrink=False)
    # warm-up / compile on 2-frame copies
    list(tracker.track([Seq(s.name, s.frames[:2], s.init_box) for s in items]))
    t0 = time.perf_counter()
    n = sum(len(r.boxes) for r in tracker.track(items))
    return n / (time.perf_counter() - t0), n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="model directory (default: --model)")
    p.add_argument("--model", choices=["tiny", "vit_base", "vit_large"], default="tiny",
                   help="tiny = converted fixture checkpoint; vit_base/vit_large = random weights")
    p.add_argument("--sequences", default=str(DEFAULT_SEQUENCES), help="folder of real sequences")
    p.add_argument("--batch", type=int, default=8, help="batched tracker B")
    p.add_argument("--max_frames", type=int, default=40, help="frames per sequence (0 = all)")
    p.add_argument("--repeats", type=int, default=20, help="repeats of the step-only timing")
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--precision", default="highest", help="matmul precision (highest | default | tensorfloat32)")
    p.add_argument("--skip", default="", help="comma list of rows to skip: step,b1,b1dec,bb,bbdec")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    precision = None if args.precision == "default" else args.precision

    model, variables = build_model(args)
    c = model.config
    track_cfg = {"search_size": c.search_size, "template_size": c.template_size,
                 "search_factor": 5.0 if c.search_size == 320 else 4.0, "matmul_precision": precision}
    seqs = load_benchmark("folder", args.sequences)
    if args.max_frames:
        seqs = [Seq(s.name, s.frames[:args.max_frames], s.init_box) for s in seqs]
    else:
        seqs = [Seq(s.name, s.frames, s.init_box) for s in seqs]
    dev = jax.devices()[0]
    print(f"device: {dev.platform} ({dev.device_kind}), {os.cpu_count()} CPUs; model: "
          f"{args.checkpoint or args.model} (dim {c.embed_dim}, depth {c.depth}, search {c.search_size}); "
          f"{len(seqs)} sequences x <= {args.max_frames or 'all'} frames; precision {args.precision}")
    rows = []
    if "step" not in skip:
        rows.append(("step only, batch 1", step_only(model, variables, 1, args.repeats, args.threshold, precision), "-"))
        rows.append((f"step only, batch {args.batch}",
                     step_only(model, variables, args.batch, max(3, args.repeats // 4), args.threshold, precision), "-"))
    if "b1" not in skip:
        fps, n = batch1(model, variables, seqs, True, args.threshold, track_cfg)
        rows.append(("tracker batch 1, frames pre-decoded", fps, n))
    if "b1dec" not in skip:
        fps, n = batch1(model, variables, seqs, False, args.threshold, track_cfg)
        rows.append(("tracker batch 1, incl. JPEG decode", fps, n))
    if "bb" not in skip:
        fps, n = batched(model, variables, seqs, args.batch, True, args.threshold, track_cfg)
        rows.append((f"tracker batched B={args.batch}, frames pre-decoded", fps, n))
    if "bbdec" not in skip:
        fps, n = batched(model, variables, seqs, args.batch, False, args.threshold, track_cfg)
        rows.append((f"tracker batched B={args.batch}, incl. JPEG decode", fps, n))
    w = max(len(r[0]) for r in rows)
    print(f"\n| {'case'.ljust(w)} | frames/s | frames |\n|{'-' * (w + 2)}|---------:|-------:|")
    for name, fps, n in rows:
        print(f"| {name.ljust(w)} | {fps:8.1f} | {str(n):>6} |")


if __name__ == "__main__":
    main()
