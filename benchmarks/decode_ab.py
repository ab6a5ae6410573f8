"""Decode and per-pair changes of the training input pipeline, A/B on real frames (interleaved rounds, medians).

    python benchmarks/decode_ab.py --frames_from ../shared/real_sequences/truck2 --box_scales 1,8

1. decode, ms per frame (wall and CPU time): the official ``cv2.imread`` + BGR->RGB; the decoder before this change
   (bytes read, completeness/size checks, ``cv2.imdecode`` BGR, BGR->RGB); ``np.fromfile`` +
   imdecode; the decoder now (``grm_jax.datasets.decode.decode_image``: RGB straight from
   libjpeg-turbo); libjpeg's reduced decodes at 1/2, 1/4, 1/8. Each variant decodes the same
   ``--frames`` frames per round.
2. the other changed steps, before (``--before``) and now: the per-crop float steps (brightness,
   second flip, normalisation) and the crop of a flipped frame (a reversed view), ms per call.
3. pairs/s, one process, for each ``--box_scales`` factor (the frames' boxes made F times larger
   about their centres, standing for larger objects; see pipeline_speed.py): the pipeline at git
   revision ``--before`` (its processing.py, with the decoder before); now (exact); now with
   ``cv2.setNumThreads(1)``; now with ``data.reduced_decode``. Rounds of ``--pairs`` pairs, the
   variants interleaved, after 8 warm-up pairs each; the before/now samples are compared bit for bit.
All in one process with ``keep_freed_memory()`` applied (as the pipeline applies it; the allocator
setting is process-wide, so ``pipeline_speed.py`` run with ``GRM_KEEP_FREED_MEMORY=0`` / ``1`` in
alternating processes measures it).

4. the effect of ``data.reduced_decode`` on the crops, over ``--effect_pairs`` samples (the same
   sample indices, hence the same frames and draws, in both modes): the share of frames decoded at
   each 1/k, and over the image part of the crops (padding excluded) the mean absolute difference
   in grey levels and the PSNR against the exact crops, and the largest box difference in output
   pixels.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import types

REPO = pathlib.Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from data_pipelines import pipeline  # noqa: E402
from grm_jax.crop import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from grm_jax.datasets.decode import decode_image, decode_reduced  # noqa: E402
from grm_jax.host_memory import keep_freed_memory  # noqa: E402
from grm_jax.datasets.loaders import training_source  # noqa: E402
from grm_jax.image_check import check_complete, check_pixels  # noqa: E402
from grm_jax.run_config import RunConfig  # noqa: E402
from pipeline_speed import make_got10k_layout  # noqa: E402


def decode_before(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The decoder before this change: checks, BGR decode, one BGR->RGB pass."""
    check_complete(data, name)
    check_pixels(data, name)
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _read(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


DECODERS = {
    "cv2.imread + BGR->RGB (official)": lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB),
    "read + checks + imdecode BGR + BGR->RGB (before)": lambda p: decode_before(_read(p), str(p)),
    "np.fromfile + imdecode BGR + BGR->RGB": lambda p: cv2.cvtColor(
        cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
    "read + checks + imdecode RGB (now)": lambda p: decode_image(_read(p), str(p)),
    "reduced 1/2 (RGB)": lambda p: decode_reduced(_read(p), str(p), 2)[0],
    "reduced 1/4 (RGB)": lambda p: decode_reduced(_read(p), str(p), 4)[0],
    "reduced 1/8 (RGB)": lambda p: decode_reduced(_read(p), str(p), 8)[0],
}


def decode_table(frames: list, rounds: int) -> dict:
    """(wall ms, CPU ms) per frame of each decoder (medians over rounds; decoders interleaved)."""
    times = collections.defaultdict(list)
    for _ in range(rounds):
        for name, fn in DECODERS.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for p in frames:
                fn(p)
            times[name].append((1e3 * (time.perf_counter() - t0) / len(frames),
                                1e3 * (time.process_time() - c0) / len(frames)))
    return {name: [statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)]
            for name, v in times.items()}


class _BeforeDecodes:
    """A training source whose ``load_frame`` decodes as before this change."""

    def __init__(self, source):
        self._source = source

    def __getattr__(self, name):
        return getattr(self._source, name)

    def load_frame(self, i, f):
        return decode_before(self._source.frame_bytes(i, f), self._source.frame_path(i, f))


def module_at(rev: str, path: str) -> types.ModuleType:
    """The module ``path`` (e.g. data_pipelines/processing.py) as it was at git revision ``rev``."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True, text=True,
                          check=True).stdout
    module = types.ModuleType(f"before_{pathlib.Path(path).stem}")
    exec(compile(text, f"{rev}:{path}", "exec"), module.__dict__)  # noqa: S102
    return module


def before_maker(rev: str, source, run: RunConfig):
    """``index -> sample`` of the pipeline at git revision ``rev`` (its processing.py and crop.py, the
    decoder before)."""
    old = module_at(rev, "data_pipelines/processing.py")
    old_crop = module_at(rev, "grm_jax/crop.py")
    old.sample_target = old_crop.sample_target  # its jittered_center_crop crops with the crop code of then
    sampler = pipeline.PairSampler([_BeforeDecodes(source)], [1.0], max_gap=run.data.max_gap)
    processor = old.PairProcessor(run.crop("template"), run.crop("search"), stride=run.model.patch_size)

    def make(index):
        sample = old.make_training_sample(sampler, processor, np.random.default_rng([0, index]))
        sample["index"] = np.int64(index)
        return sample
    return make


class _FewerThreads:
    """Runs a maker with ``cv2.setNumThreads(1)``."""

    def __init__(self, maker):
        self.maker = maker

    def __call__(self, index):
        saved = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return self.maker(index)
        finally:
            cv2.setNumThreads(saved)


def steps_table(rev: str, frame_path, rounds: int, repeats: int = 20) -> dict:
    """(wall ms, CPU ms) of the changed steps, before (``rev``) and now, interleaved; medians."""
    old_proc, old_crop = module_at(rev, "data_pipelines/processing.py"), module_at(rev, "grm_jax/crop.py")
    from data_pipelines.processing import PairProcessor  # noqa: PLC0415
    from grm_jax.crop import sample_target  # noqa: PLC0415

    run = RunConfig()
    frame = decode_image(_read(frame_path))
    flipped = frame[:, ::-1, :]  # the joint flip's reversed view
    small, large = [1100.0, 500.0, 45.0, 17.0], [900.0, 300.0, 360.0, 136.0]  # truck2's box, and x8
    crops = {size: sample_target(frame, small, 2.0 * size / 128, size)[0] for size in (128, 256)}
    att = {size: np.zeros((size, size), bool) for size in crops}
    box = np.array([0.3, 0.3, 0.2, 0.2], np.float32)
    new_p = PairProcessor(run.crop("template"), run.crop("search"))
    old_p = old_proc.PairProcessor(run.crop("template"), run.crop("search"))

    def per_image(proc):
        rng = np.random.default_rng(0)
        return lambda: [proc._per_image(crops[s], box, att[s], rng) for s in crops]
    steps = {
        "brightness/flip/normalize, template + search": (per_image(old_p), per_image(new_p)),
        "search crop of a flipped frame, truck2 box": (lambda: old_crop.sample_target(flipped, small, 4.0, 256),
                                                       lambda: sample_target(flipped, small, 4.0, 256)),
        "search crop of a flipped frame, box x8": (lambda: old_crop.sample_target(flipped, large, 4.0, 256),
                                                   lambda: sample_target(flipped, large, 4.0, 256)),
    }
    times = collections.defaultdict(list)
    for _ in range(rounds):
        for name, fns in steps.items():
            for which, fn in zip(("before", "now"), fns):
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(repeats):
                    fn()
                times[(name, which)].append((1e3 * (time.perf_counter() - t0) / repeats,
                                             1e3 * (time.process_time() - c0) / repeats))
    return {f"{name} | {which}": [statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)]
            for (name, which), v in times.items()}


def pairs_table(makers: dict, pairs: int, rounds: int, warmup: int = 8) -> dict:
    """(pairs/s by wall clock, pairs per CPU second of this process) of each maker (medians over
    rounds of ``pairs`` samples; makers interleaved). CPU time counts the work, not the waiting for
    the cores on a shared machine: pairs per CPU second is the pairs/s one free core would give."""
    rates = collections.defaultdict(list)
    for make in makers.values():
        for i in range(warmup):  # first pairs of a process are slower (lazy initialisation, cold caches)
            make(10 ** 6 + i)
    for r in range(rounds):
        for name, make in makers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(r * pairs, (r + 1) * pairs):
                make(i)
            rates[name].append((pairs / (time.perf_counter() - t0), pairs / (time.process_time() - c0)))
    return {name: [statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)]
            for name, v in rates.items()}


def _pixels(sample: dict, key: str) -> np.ndarray:
    """Normalized crop -> grey levels (brightness included; the same draw in both modes)."""
    return (sample[key] * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)) * 255.0


def crop_effect(exact_maker, reduced_maker, source, count: int) -> dict:
    """Effect of reduced decoding on the crops (see module doc, 3)."""
    scales = collections.Counter()
    load = source.load_frame_reduced

    def counting(i, f, reduce):
        image, k, full_hw = load(i, f, reduce)
        scales[k] += 1
        return image, k, full_hw
    source.load_frame_reduced = counting
    sq, ab, n_px, box_err = {}, {}, {}, 0.0
    try:
        for index in range(count):
            a, b = exact_maker(index), reduced_maker(index)
            for key, size in (("template", a["template"].shape[0]), ("search", a["search"].shape[0])):
                keep = ~(a[f"{key}_att"] | b[f"{key}_att"])
                diff = (_pixels(a, key) - _pixels(b, key))[keep]
                sq[key] = sq.get(key, 0.0) + float(np.square(diff, dtype=np.float64).sum())
                ab[key] = ab.get(key, 0.0) + float(np.abs(diff, dtype=np.float64).sum())
                n_px[key] = n_px.get(key, 0) + diff.size
                box_err = max(box_err, float(np.abs(a[f"{key}_box"] - b[f"{key}_box"]).max()) * size)
    finally:
        del source.load_frame_reduced
    out = {"decodes at 1/k": {str(k): v for k, v in sorted(scales.items())}, "box max diff px": box_err}
    for key in sq:
        mse = sq[key] / max(n_px[key], 1)
        out[f"{key} MAE"] = ab[key] / max(n_px[key], 1)
        out[f"{key} PSNR dB"] = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    return out


def scale_section(args, run: RunConfig, box_scale: float, tmp: pathlib.Path) -> dict:
    root = make_got10k_layout(tmp / f"x{box_scale:g}", args.sequences, args.frames, args.frames_from,
                              box_scale=box_scale)
    source = training_source("got10k_train_all", str(root))

    def maker(reduced):
        return pipeline.PairMaker([source], [1.0], run.crop("template"), run.crop("search"), run.data.max_gap,
                                  seed=0, stride=run.model.patch_size, reduced_decode=reduced)
    exact, reduced, before = maker(False), maker(True), before_maker(args.before, source, run)
    same = all(all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()
               for a, b in ((before(i), exact(i)) for i in range(args.check_pairs)))
    makers = {f"before ({args.before})": before, "now, exact": exact,
              "now, exact, cv2.setNumThreads(1)": _FewerThreads(exact), "now, data.reduced_decode": reduced}
    rates = pairs_table(makers, args.pairs, args.rounds)
    effect = crop_effect(exact, reduced, source, args.effect_pairs)
    return {"box_scale": box_scale, "before_equals_now": same, "pairs_s": rates, "reduced_effect": effect}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames_from", required=True, help="a folder of JPEGs + groundtruth.txt (linked, not copied)")
    p.add_argument("--box_scales", default="1", help="comma list of box scale factors")
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--decode_frames", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pairs", type=int, default=24)
    p.add_argument("--check_pairs", type=int, default=20, help="before/now samples compared bit for bit")
    p.add_argument("--effect_pairs", type=int, default=200)
    p.add_argument("--before", default="7622ef1", help="git revision of the pipeline before this change")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    run = RunConfig()
    keep_freed_memory()  # as the pipeline does (PairMaker): every variant below runs with it
    frames = sorted(pathlib.Path(args.frames_from).glob("*.jpg"))[:args.decode_frames]
    load_before = os.getloadavg()
    out = {"frames_from": args.frames_from, "cpus": os.cpu_count(),
           "decode_ms_per_frame": decode_table(frames, args.rounds),
           "steps_ms": steps_table(args.before, frames[0], args.rounds), "scales": []}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (float(s) for s in args.box_scales.split(",")):
            out["scales"].append(scale_section(args, run, scale, pathlib.Path(tmp)))
    out["load_average"] = [load_before, os.getloadavg()]
    _print(out)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


def _print(out: dict) -> None:
    load = out["load_average"]
    print(f"frames of {out['frames_from']}, {out['cpus']} CPUs, load average {load[0][0]:.1f} -> {load[1][0]:.1f}")
    print("\n| decode (1280x720 JPEG) | ms per frame (wall, median) | CPU ms per frame (median) |\n|---|---|---|")
    for name, (wall, cpu) in out["decode_ms_per_frame"].items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    print("\n| step | before / now | ms (wall, median) | CPU ms (median) |\n|---|---|---|---|")
    for name, (wall, cpu) in out["steps_ms"].items():
        print(f"| {name} | {wall:.3f} | {cpu:.3f} |")
    for sec in out["scales"]:
        print(f"\nboxes x{sec['box_scale']:g}: before and now bit-identical: {sec['before_equals_now']}")
        print("\n| pipeline (one process) | pairs/s (wall, median) | pairs per CPU second (median) |\n|---|---|---|")
        for name, (wall, cpu) in sec["pairs_s"].items():
            print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
        eff = sec["reduced_effect"]
        print(f"\ndata.reduced_decode against exact crops: decodes at 1/k {eff['decodes at 1/k']}, "
              f"box max diff {eff['box max diff px']:.2f} output px")
        print("| crop | MAE (grey levels) | PSNR (dB) |\n|---|---|---|")
        for key in ("template", "search"):
            print(f"| {key} | {eff[f'{key} MAE']:.2f} | {eff[f'{key} PSNR dB']:.1f} |")


if __name__ == "__main__":
    main()
