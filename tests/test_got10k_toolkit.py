"""GOT-10k metrics cross-checked against the official toolkit (PyPI ``got10k`` 0.1.3).

A small synthetic GOT-10k val tree (three sequences, different image sizes, cover-0 / absent
frames, ground truth cut by the image border) is scored twice from the SAME box numbers:
* ours: ``load_benchmark('got10k_val')`` + ``score_results`` (tests/helpers.py) on ``<seq>.txt`` files;
* toolkit: ``ExperimentGOT10k(...).report`` on ``GOT-10k/<tracker>/<seq>/<seq>_001.txt`` files
  produced from ours by ``write_got10k_submission``.
AO, SR0.5, SR0.75, the 101-point success curve, the per-sequence AO / SR and the speed must agree.

Toolkit facts this relies on (got10k/experiments/got10k.py, got10k/datasets/got10k.py,
got10k/utils/metrics.py): results are read from ``<result_dir>/GOT-10k/<tracker>/<seq>/``;
``groundtruth.txt`` and result files are read with ``np.loadtxt(delimiter=',')``; images are
``glob('*.jpg')``; every sequence needs ``meta_info.ini`` (first line skipped, then ``key: value``
lines; ``resolution: (W, H)`` is the clipping bound) and ``cover.label``, ``absence.label``,
``cut_by_image.label``; the first frame and frames with cover == 0 are dropped; IoUs are pooled
over all sequences; ``sr`` is SR0.5 and SR0.75 is ``succ_curve[75]`` (threshold 0.75, strict >).
A sequence without ``<seq>_time.txt`` crashes the toolkit (``seq_times`` is then undefined), so
time files are always written.
"""
import json

import cv2
import matplotlib
import numpy as np
import pytest

from got10k.experiments import ExperimentGOT10k

from grm_jax.datasets import load_benchmark
from grm_jax.evaluate.results import write_got10k_submission, write_results
from helpers import score_results

TRACKER = "ours"
# name, frames, image width, image height
SEQUENCES = (
    ("GOT-10k_Val_000011", 12, 320, 240),
    ("GOT-10k_Val_000003", 9, 97, 61),
    ("GOT-10k_Val_000042", 15, 200, 360),
)
TOL = 1e-4  # percent units (1e-6 as a fraction)


def _ground_truth(n, W, H):
    t = np.arange(n, dtype=np.float64)
    w = W * 0.3 + W * 0.04 * np.sin(t)
    h = H * 0.25 + H * 0.03 * np.cos(t)
    x = W * 0.1 + t * (W * 0.4 / n) + 0.3125
    y = H * 0.2 + H * 0.02 * t + 0.71
    gt = np.round(np.stack([x, y, w, h], axis=1), 4)
    gt[3] = [W - 0.5 * gt[3, 2], H * 0.5, gt[3, 2], gt[3, 3]]  # cut by the right border
    gt[4] = [-3.25, -1.5, gt[4, 2], gt[4, 3]]  # cut by the top-left corner
    if n > 10:
        gt[9] = [10.0, 10.0, 20.0, 20.0]  # integer boxes for exact-threshold ties
        gt[10] = [10.0, 10.0, 20.0, 20.0]
    return np.round(gt, 4)


def _predictions(gt, W, H, noise, rng):
    n = gt.shape[0]
    wh = np.abs(gt[:, 2:]) + 1.0
    pred = gt + rng.normal(size=gt.shape) * noise * np.concatenate([wh, wh], axis=1)
    pred[:, 2:] = np.abs(pred[:, 2:]) + 0.5
    pred[0] = gt[0] + [50.0, 40.0, 3.0, 3.0]  # first frame: wrong, but never counted
    pred[1] = gt[1]  # perfect
    pred[2] = [-0.3 * gt[2, 2], -5.5, gt[2, 2], gt[2, 3] + 2.25]  # partly left/above the image
    pred[4] = [W - 0.4 * gt[4, 2], H - 0.4 * gt[4, 3], 1.5 * gt[4, 2], 1.5 * gt[4, 3]]  # beyond bottom-right
    pred[6] = [gt[6, 0], gt[6, 1], 0.0, gt[6, 3]]  # zero width
    pred[7] = [gt[7, 0] + 1.7, gt[7, 1] - 2.2, gt[7, 2], 0.0]  # zero height
    pred[8] = [W + 10.5, 5.0, 30.0, 20.0]  # entirely outside
    if n > 10:
        pred[9] = [10.0, 10.0, 20.0, 10.0]  # IoU exactly 0.5 (not a success at 0.5)
        pred[10] = [10.0, 10.0, 20.0, 15.0]  # IoU exactly 0.75 (not a success at 0.75)
    if n > 13:
        pred[13] = [-20.0, -20.0, W + 40.0, H + 40.0]  # covers the whole image
    return np.round(pred, 4)


def _write_sequence(base, name, n, W, H, gt, cover, absence):
    sdir = base / name
    sdir.mkdir(parents=True)
    img = np.full((H, W, 3), 127, np.uint8)
    for i in range(1, n + 1):
        assert cv2.imwrite(str(sdir / f"{i:08d}.jpg"), img)
    np.savetxt(sdir / "groundtruth.txt", gt, fmt="%.4f", delimiter=",")
    cut = ((gt[:, 0] < 0) | (gt[:, 1] < 0) | (gt[:, 0] + gt[:, 2] > W) | (gt[:, 1] + gt[:, 3] > H))
    for label, values in (("cover", cover), ("absence", absence), ("cut_by_image", cut)):
        (sdir / f"{label}.label").write_text("".join(f"{int(v)}\n" for v in values))
    (sdir / "meta_info.ini").write_text(
        "[METAINFO]\n"
        "url: https://example.invalid/video\n"
        "begin: 00:00:01\n"
        "end: 00:00:05\n"
        "anno_fps: 10Hz\n"
        "object_class: synthetic\n"
        "motion_class: moving\n"
        "major_class: synthetic\n"
        "root_class: object\n"
        "motion_adverb: slowly\n"
        f"resolution: ({W}, {H})\n"
    )


def _build(tmp_path, fmt):
    rng = np.random.default_rng(1234)
    root = tmp_path / "got10k"
    base = root / "val"
    base.mkdir(parents=True)
    ours_dir = tmp_path / "results_ours"
    for k, (name, n, W, H) in enumerate(SEQUENCES):
        gt = _ground_truth(n, W, H)
        cover = rng.integers(1, 9, size=n)
        absence = np.zeros(n, dtype=np.int64)
        cover[5] = 0  # target absent
        absence[5] = 1
        if k == 0:
            cover[7] = 0  # fully occluded but present (zero-height prediction there is not counted)
            cover[11] = 0
            absence[11] = 1
            gt[11] = 0.0  # absent frame without a box
        if k == 2:
            cover[12] = 0
            absence[12] = 1
        _write_sequence(base, name, n, W, H, gt, cover, absence)
        pred = _predictions(gt, W, H, noise=(0.03, 0.15, 0.4)[k], rng=rng)
        times = rng.uniform(0.01, 0.05, size=n)
        times[2] = 0.0  # not counted for the speed by either side
        write_results(ours_dir, name, pred, times=times, fmt=fmt)
    (base / "list.txt").write_text("".join(s[0] + "\n" for s in SEQUENCES))
    toolkit_results = tmp_path / "results_toolkit"
    write_got10k_submission(ours_dir, [s[0] for s in SEQUENCES], toolkit_results / "GOT-10k" / TRACKER, fmt=fmt)
    return root, ours_dir, toolkit_results


@pytest.mark.parametrize("fmt", ["float", "int"])
def test_got10k_metrics_match_official_toolkit(tmp_path, fmt):
    root, ours_dir, toolkit_results = _build(tmp_path, fmt)

    # Both sides must read the very same numbers.
    for name, _, _, _ in SEQUENCES:
        a = np.loadtxt(ours_dir / f"{name}.txt")
        b = np.loadtxt(toolkit_results / "GOT-10k" / TRACKER / name / f"{name}_001.txt", delimiter=",")
        np.testing.assert_array_equal(a, b)

    seqs = load_benchmark("got10k_val", root)
    assert [s.name for s in seqs] == [s[0] for s in SEQUENCES]
    ours = score_results(seqs, ours_dir, tmp_path / "report_ours", TRACKER, plots=False)

    exp = ExperimentGOT10k(str(root), subset="val", result_dir=str(toolkit_results),
                           report_dir=str(tmp_path / "report_toolkit"))
    import matplotlib.pyplot as plt

    with matplotlib.rc_context():  # the toolkit changes global rcParams (font size) while plotting
        try:
            perf = exp.report([TRACKER])
        finally:
            plt.close("all")
    with open(tmp_path / "report_toolkit" / "GOT-10k" / TRACKER / "performance.json") as fh:
        assert json.load(fh)[TRACKER]["overall"]["ao"] == pytest.approx(float(perf[TRACKER]["overall"]["ao"]))
    overall = perf[TRACKER]["overall"]
    succ = np.asarray(overall["succ_curve"], np.float64)
    thr = np.linspace(0, 1, 101)
    assert thr[50] == 0.5 and thr[75] == 0.75

    # Sanity: the synthetic predictions are neither perfect nor useless.
    assert 20.0 < ours["ao"] < 90.0 and 0.0 < ours["sr75"] < ours["sr50"] < 100.0

    assert ours["ao"] == pytest.approx(100.0 * overall["ao"], abs=TOL)
    assert ours["sr50"] == pytest.approx(100.0 * overall["sr"], abs=TOL)
    assert ours["sr50"] == pytest.approx(100.0 * succ[50], abs=TOL)
    assert ours["sr75"] == pytest.approx(100.0 * succ[75], abs=TOL)
    np.testing.assert_allclose(np.asarray(ours["curves"]["got10k_success"]), 100.0 * succ, rtol=0, atol=TOL)
    assert ours["fps"] == pytest.approx(float(overall["speed_fps"]), rel=1e-9)

    for name, _, _, _ in SEQUENCES:
        mine, theirs = ours["per_sequence"][name], perf[TRACKER]["seq_wise"][name]
        assert mine["got10k_ao"] == pytest.approx(100.0 * theirs["ao"], abs=TOL), name
        assert mine["got10k_sr50"] == pytest.approx(100.0 * theirs["sr"], abs=TOL), name
        assert mine["fps"] == pytest.approx(float(theirs["speed_fps"]), rel=1e-9), name

    # metrics.json on disk carries the same numbers.
    m = json.loads((tmp_path / "report_ours" / "metrics.json").read_text())
    for k in ("ao", "sr50", "sr75"):
        assert m[k] == pytest.approx(ours[k], abs=1e-12)
