"""Cost of the truncated-image check (grm_jax.image_check) next to reading and decoding a frame.

    python benchmarks/frame_read.py                 # the real sequences + synthetic 1280x720 / 1920x1080
    python benchmarks/frame_read.py --repeats 5

Columns (microseconds per frame, median over the frames of a set, best of ``--repeats`` passes):
* read: the file's bytes (page cache warm);
* check: :func:`grm_jax.image_check.check_complete` on those bytes;
* decode: ``cv2.imdecode`` + BGR->RGB (what ``read_image`` does after the check);
* check %: check / (read + decode).
Frames are read in place from ../shared/real_sequences (research use only; never copied).
"""
from __future__ import annotations

import argparse
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

from grm_jax.image_check import check_complete  # noqa: E402

REAL = REPO.parent / "shared" / "real_sequences"


def _synthetic(folder: pathlib.Path, w: int, h: int, n: int = 20) -> list[pathlib.Path]:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), np.uint8), (0, 0), 3)
    paths = []
    for i in range(n):
        p = folder / f"{w}x{h}_{i:03d}.jpg"
        cv2.imwrite(str(p), np.roll(base, 7 * i, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(p)
    return paths


def _time(fn, items, repeats: int) -> float:
    best = []
    for item in items:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(item)
            runs.append(time.perf_counter() - t0)
        best.append(min(runs))
    return 1e6 * statistics.median(best)


def measure(paths: list[pathlib.Path], repeats: int) -> tuple[float, float, float]:
    def read(p):
        return p.read_bytes()

    data = [read(p) for p in paths]
    t_read = _time(read, paths, repeats)
    t_check = _time(lambda d: check_complete(d, "bench"), data, repeats)
    t_decode = _time(lambda d: cv2.cvtColor(cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR),
                                            cv2.COLOR_BGR2RGB), data, repeats)
    return t_read, t_check, t_decode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sets = {}
    if REAL.is_dir():
        for seq in sorted(p for p in REAL.iterdir() if p.is_dir()):
            sets[seq.name] = sorted(seq.glob("*.jpg"))[:40]
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((1280, 720), (1920, 1080)):
            sets[f"synthetic {w}x{h}"] = _synthetic(pathlib.Path(tmp), w, h)
        print("| frames | size | KiB | read µs | check µs | decode µs | check % |")
        print("|---|---|---|---|---|---|---|")
        for name, paths in sets.items():
            h, w = cv2.imread(str(paths[0])).shape[:2]
            kib = statistics.median(p.stat().st_size for p in paths) / 1024
            t_read, t_check, t_decode = measure(paths, args.repeats)
            print(f"| {name} | {w}x{h} | {kib:.0f} | {t_read:.0f} | {t_check:.1f} | {t_decode:.0f} | "
                  f"{100 * t_check / (t_read + t_decode):.2f} |")


if __name__ == "__main__":
    main()
