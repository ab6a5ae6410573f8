"""Training input pipeline alone (no network): pairs/s and where a pair's time goes.

    python benchmarks/pipeline_speed.py                                   # generated 1280x720 GOT-10k set
    python benchmarks/pipeline_speed.py --frames_from ../shared/real_sequences/truck2 --workers 0,2
    python benchmarks/pipeline_speed.py --root /data/got10k --dataset got10k_train_full --workers 0,8,16
    python benchmarks/pipeline_speed.py --frames_from ../shared/real_sequences/truck2 --box_scale 8 \
        --modes exact,reduced

Data: a GOT-10k-layout train split (``train/list.txt``, ``<seq>/00000001.jpg...``, groundtruth.txt,
absence.label, cover.label) written to a temporary folder: ``--sequences`` sequences of ``--frames``
1280x720 JPEGs, generated (textured background, a moving box), or, with ``--frames_from DIR``, the
JPEGs of DIR linked in place (never copied) with DIR/groundtruth.txt (``--box_scale F``: each box
F times wider and higher about its centre, clipped to the frame, to stand for larger objects).
``--root`` reads an existing set.

``--modes``: ``exact`` (the official pixels, the default) and/or ``reduced`` (``data.reduced_decode``:
frames decoded at 1/2, 1/4 or 1/8 where the crop allows; benchmarks/decode_ab.py measures its effect
on the crops).

1. breakdown (one process, ``--breakdown_pairs`` pairs; pairs/s by wall clock and per CPU second of
   the process, the steadier figure on a shared machine): ms per pair in decode (reading and decoding
   the two frames), crop (jittered centre crop + resize of template and search), augmentation (joint
   grayscale/flip, brightness, second flip, normalisation), heatmap, sampling/other, and batching
   (stacking ``--batch`` samples as grain's batch does);
2. throughput: the real grain pipeline (``data_pipelines.pipeline.make_train_iterator``, the crops of
   the run config ``configs/grm_got.py`` defaults) with 0 workers (this process: one core) and with each
   ``--workers`` count: pairs/s over ``--batches`` batches after ``--warmup`` batches.
"""
from __future__ import annotations

import argparse
import contextlib
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from data_pipelines import pipeline, processing  # noqa: E402
from grm_jax.datasets.loaders import training_source  # noqa: E402
from grm_jax.run_config import RunConfig  # noqa: E402

STAGES = ("decode", "crop", "augmentation", "heatmap", "sampling/other", "batching")


def scale_boxes(boxes: np.ndarray, factor: float, width: int, height: int) -> np.ndarray:
    """(N, 4) xywh boxes ``factor`` times wider and higher about their centres, clipped to the frame."""
    b = np.asarray(boxes, np.float64)
    centre = b[:, :2] + b[:, 2:] / 2
    x1y1 = np.maximum(centre - factor * b[:, 2:] / 2, 0)
    x2y2 = np.minimum(centre + factor * b[:, 2:] / 2, [width, height])
    return np.concatenate([x1y1, x2y2 - x1y1], axis=1)


def make_got10k_layout(root: pathlib.Path, sequences: int, frames: int, frames_from: str | None = None,
                       size=(1280, 720), seed: int = 0, box_scale: float = 1.0) -> pathlib.Path:
    """Writes ``root/train`` (see module doc); returns ``root``."""
    rng = np.random.default_rng(seed)
    split = root / "train"
    names = [f"GOT-10k_Train_{i + 1:06d}" for i in range(sequences)]
    src_frames, src_boxes = None, None
    if frames_from:
        src = pathlib.Path(frames_from)
        src_frames = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:frames]
        src_boxes = np.loadtxt(src / "groundtruth.txt", delimiter=",", ndmin=2)[:len(src_frames)]
        frames = len(src_frames)
        if box_scale != 1.0:
            h, w = cv2.imread(str(src_frames[0])).shape[:2]
            src_boxes = scale_boxes(src_boxes, box_scale, w, h)
    for name in names:
        d = split / name
        d.mkdir(parents=True)
        boxes = []
        for f in range(frames):
            out = d / f"{f + 1:08d}.jpg"
            if src_frames:
                out.symlink_to(src_frames[f].resolve())
                boxes.append(src_boxes[f])
                continue
            w, h = size
            img = cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h),
                             interpolation=cv2.INTER_CUBIC)
            bw, bh = 120 + 4 * f % 80, 90 + 3 * f % 60
            x, y = 200 + 9 * f % (w - 400), 150 + 5 * f % (h - 300)
            cv2.rectangle(img, (x, y), (x + bw, y + bh), (20, 200, 240), -1)
            cv2.imwrite(str(out), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            boxes.append([x, y, bw, bh])
        np.savetxt(d / "groundtruth.txt", np.asarray(boxes, np.float64), fmt="%.4f", delimiter=",")
        (d / "absence.label").write_text("0\n" * frames)
        (d / "cover.label").write_text("8\n" * frames)
    (split / "list.txt").write_text("".join(n + "\n" for n in names))
    return root


@contextlib.contextmanager
def stage_timers(totals: dict, maker: pipeline.PairMaker):
    """Accumulates seconds per stage into ``totals`` while patched (see module doc)."""
    def timed(stage, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                totals[stage] = totals.get(stage, 0.0) + time.perf_counter() - t0
        return wrapper

    saved = (processing.jittered_center_crop, processing.generate_heatmap, processing.PairProcessor.__call__)
    sources = maker.sampler.sources
    processing.jittered_center_crop = timed("crop", saved[0])
    processing.generate_heatmap = timed("heatmap", saved[1])
    processing.PairProcessor.__call__ = timed("processor", saved[2])
    for s in sources:
        s.load_frame = timed("decode", s.load_frame)
        s.load_frame_reduced = timed("decode in processor", s.load_frame_reduced)  # reduced mode: lazy decodes
    try:
        yield
    finally:
        processing.jittered_center_crop, processing.generate_heatmap, processing.PairProcessor.__call__ = saved
        for s in sources:
            del s.load_frame, s.load_frame_reduced


def breakdown(maker: pipeline.PairMaker, pairs: int, batch: int, first: int = 0) -> dict:
    """ms per pair of each stage (one process), samples ``first`` .. ``first + pairs - 1``."""
    totals: dict = {}
    samples = []
    t0, c0 = time.perf_counter(), time.process_time()
    with stage_timers(totals, maker):
        for i in range(first, first + pairs):
            samples.append(maker(i))
    t1 = time.perf_counter()
    for j in range(0, pairs - batch + 1, batch):
        chunk = samples[j:j + batch]
        {k: np.stack([s[k] for s in chunk]) for k in chunk[0]}
    batching = time.perf_counter() - t1
    cpu = time.process_time() - c0
    made = t1 - t0
    lazy = totals.get("decode in processor", 0.0)
    ms = {"decode": totals.get("decode", 0.0) + lazy, "crop": totals.get("crop", 0.0),
          "heatmap": totals.get("heatmap", 0.0)}
    ms["augmentation"] = totals.get("processor", 0.0) - ms["crop"] - ms["heatmap"] - lazy
    ms["sampling/other"] = made - sum(ms.values())
    ms["batching"] = batching
    out = {k: 1e3 * ms[k] / pairs for k in STAGES}
    out["pairs/s"] = pairs / (made + batching)
    out["pairs/CPU s"] = pairs / cpu  # work per core, whatever the other jobs on the machine
    return out


def interleaved_breakdown(makers: dict, pairs: int, batch: int, rounds: int) -> dict:
    """Per mode: the median over ``rounds`` rounds (modes alternating) of :func:`breakdown`."""
    per_round = max(pairs // rounds, batch)
    runs = {mode: [] for mode in makers}
    for r in range(rounds):
        for mode, maker in makers.items():
            runs[mode].append(breakdown(maker, per_round, batch, first=r * per_round))
    return {mode: {k: statistics.median(run[k] for run in rs) for k in rs[0]} for mode, rs in runs.items()}


def throughput(maker, batch: int, workers: int, batches: int, warmup: int, threads: int) -> float:
    """pairs/s of the grain pipeline with ``workers`` worker processes (0 = this process)."""
    it = pipeline.make_train_iterator(None, batch, seed=0, num_workers=workers, num_threads=threads,
                                      pair_maker=maker)
    try:
        for _ in range(warmup):
            next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * batch / (time.perf_counter() - t0)
    finally:
        close = getattr(it, "close", None)
        if close:
            close()


def _print_tables(out: dict) -> None:
    modes = out["modes"]
    print(f"input pipeline, {out['data']}, batch {out['batch']}, {out['cpus']} CPUs, "
          f"load average {out['load_average'][0]:.1f}")
    print("\n| mode | " + " | ".join(STAGES) + " | pairs/s (one process) | pairs per CPU second |\n|"
          + "---|" * (len(STAGES) + 3))
    for mode, m in modes.items():
        stages = m["stages_ms_per_pair"]
        print(f"| {mode} | " + " | ".join(f"{stages[k]:.2f}" for k in STAGES)
              + f" | {stages['pairs/s']:.1f} | {stages['pairs/CPU s']:.1f} |")
    print("\n| grain workers | " + " | ".join(f"pairs/s {mode}" for mode in modes) + " |\n|---|"
          + "---|" * len(modes))
    for w in next(iter(modes.values()))["pairs_s"]:
        print(f"| {w} | " + " | ".join(f"{m['pairs_s'][w]:.1f}" for m in modes.values()) + " |")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="existing dataset root (default: a generated temporary set)")
    p.add_argument("--dataset", default="got10k_train_all")
    p.add_argument("--frames_from", default=None, help="link the JPEGs of this folder (+ groundtruth.txt)")
    p.add_argument("--box_scale", type=float, default=1.0, help="with --frames_from: boxes F times larger")
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--breakdown_pairs", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1, help="breakdown rounds (modes interleaved; medians)")
    p.add_argument("--modes", default="exact", help="comma list of exact (official pixels) and reduced")
    p.add_argument("--workers", default="0,2", help="comma list of grain worker counts (0 = this process)")
    p.add_argument("--threads", type=int, default=1, help="grain reader threads per process")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",")]
    if not modes or set(modes) - {"exact", "reduced"}:
        p.error(f"--modes: exact and/or reduced, got {args.modes!r}")
    run = RunConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or make_got10k_layout(pathlib.Path(tmp), args.sequences, args.frames, args.frames_from,
                                               box_scale=args.box_scale)
        source = training_source(args.dataset, str(root))
        makers = {m: pipeline.PairMaker([source], [1.0], run.crop("template"), run.crop("search"),
                                        run.data.max_gap, seed=0, stride=run.model.patch_size,
                                        reduced_decode=(m == "reduced")) for m in modes}
        stages = interleaved_breakdown(makers, args.breakdown_pairs, args.batch, max(args.rounds, 1))
        rates = {m: {} for m in modes}
        for w in (int(x) for x in args.workers.split(",")):
            for m in modes:
                rates[m][str(w)] = throughput(makers[m], args.batch, w, args.batches, args.warmup, args.threads)
    data = args.root or (f"linked from {args.frames_from}" if args.frames_from else "generated 1280x720")
    if args.frames_from and args.box_scale != 1.0:
        data += f", boxes x{args.box_scale:g}"
    out = {"data": data, "batch": args.batch, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
           "threads": args.threads, "modes": {m: {"stages_ms_per_pair": stages[m], "pairs_s": rates[m]} for m in modes}}
    out.update(out["modes"][modes[0]])  # the first mode's figures at the top level
    _print_tables(out)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
