"""Scoring LaSOT the way papers need it: the protocol choice (grm | official) checked against an
independent computation, scoring a subset (--sequences, or the sequences present), stable tracker
styles and outside legends in every chart, "–" for unknown speeds, and the README's worked
example "Compare with published trackers" on result folders in the released layouts.

The LaSOT root is written by the tests in the official layout (frames are empty files: scoring
never decodes a LaSOT frame)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from grm_jax import cli
from grm_jax.configuration import load_run_config
from grm_jax.evaluate import attributes as A
from grm_jax.evaluate import plots, runner
from grm_jax.evaluate.results import write_results

NAMES = ("airplane-1", "airplane-9", "basketball-1")  # from the shipped LaSOT test table
README = Path(__file__).resolve().parents[1] / "README.md"


def _write_lasot(root: Path, names=NAMES, seed=0) -> dict:
    """LaSOT layout for ``names``: img/*.jpg (empty), groundtruth.txt, full_occlusion.txt,
    out_of_view.txt and att/<seq>.txt. Returns {name: (gt (N,4), visible (N,))}."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, name in enumerate(names):
        n = 30 + 7 * k
        sdir = root / name.rsplit("-", 1)[0] / name
        (sdir / "img").mkdir(parents=True)
        for i in range(1, n + 1):
            (sdir / "img" / f"{i:08d}.jpg").touch()
        xy = 100 + np.cumsum(rng.normal(0, 4, (n, 2)), axis=0)
        gt = np.round(np.concatenate([xy, np.tile([80.0 + 20 * k, 60.0], (n, 1))], axis=1))
        occluded = np.zeros(n, int)
        occluded[[4, 5, 17]] = 1
        out_of_view = np.zeros(n, int)
        out_of_view[[9, 10 + k]] = 1
        gt[9] = 0  # LaSOT writes 0,0,0,0 while the target is out of view
        np.savetxt(sdir / "groundtruth.txt", gt, fmt="%d", delimiter=",")
        (sdir / "full_occlusion.txt").write_text(",".join(map(str, occluded)) + "\n")
        (sdir / "out_of_view.txt").write_text(",".join(map(str, out_of_view)) + "\n")
        flags = np.zeros(len(A.LASOT_ATTRIBUTES), int)
        flags[[0, 3 + k]] = 1
        (sdir / "att").mkdir()
        (sdir / "att" / f"{name}.txt").write_text(",".join(map(str, flags)) + "\n")
        out[name] = (gt, (occluded == 0) & (out_of_view == 0))
    return out


def _predictions(truth: dict, seed: int, shift=(0.0, 0.0), scale=1.0, noise=6.0) -> dict:
    rng = np.random.default_rng(seed)
    preds = {}
    for name, (gt, _) in truth.items():
        wh = np.tile(gt[np.argmax(gt[:, 2]), 2:], (len(gt), 1)) * scale  # a size even where the target is absent
        c = gt[:, :2] + gt[:, 2:] / 2 + np.asarray(shift) + rng.normal(0, noise, (len(gt), 2))
        preds[name] = np.concatenate([c - wh / 2, wh], axis=1)
    return preds


def _write_folder(folder: Path, preds: dict, times: bool, fmt: str = "int", delimiter: str = "\t"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, boxes in preds.items():
        if delimiter == "\t":
            write_results(folder, name, boxes, times=np.full(len(boxes), 0.02) if times else None, fmt=fmt)
        else:
            np.savetxt(folder / f"{name}.txt", boxes, fmt="%d", delimiter=delimiter)
    return folder


# ------------------------------------------------------------------ independent computation

def _reference_scores(truth: dict, preds: dict, protocol: str) -> dict:
    """AUC / P / NP in % computed frame by frame with plain Python from the protocols' definitions:
    the first box is the ground truth; pixel-inclusive IoU; frames with an empty ground-truth box
    or an invisible target never count as a success or a precision hit; each sequence's counts
    are divided by its valid frames ('grm') or by all its frames ('official'); scores are means
    over sequences."""
    auc, prec, nprec = [], [], []
    thresholds = [0.05 * i for i in range(21)]
    for name, (gt, visible) in truth.items():
        pred = [list(map(float, b)) for b in np.trunc(preds[name])]  # the files hold truncated integers
        pred[0] = list(map(float, gt[0]))
        ious, errs, nerrs, n_valid = [], [], [], 0
        for (px, py, pw, ph), (gx, gy, gw, gh), vis in zip(pred, gt, visible):
            if not (gw > 0 and gh > 0 and vis):
                continue
            n_valid += 1
            iw = min(px + pw - 1, gx + gw - 1) - max(px, gx) + 1
            ih = min(py + ph - 1, gy + gh - 1) - max(py, gy) + 1
            inter = max(iw, 0.0) * max(ih, 0.0)
            ious.append(inter / (pw * ph + gw * gh - inter))
            dx = (px + (pw - 1) / 2) - (gx + (gw - 1) / 2)
            dy = (py + (ph - 1) / 2) - (gy + (gh - 1) / 2)
            errs.append((dx * dx + dy * dy) ** 0.5)
            nerrs.append(((dx / gw) ** 2 + (dy / gh) ** 2) ** 0.5)
        denom = n_valid if protocol == "grm" else len(gt)
        auc.append(sum(sum(1 for v in ious if v > t) / denom for t in thresholds) / len(thresholds))
        prec.append(sum(1 for e in errs if e <= 20) / denom)
        nprec.append(sum(1 for e in nerrs if e <= 0.2) / denom)
    return {"auc": 100 * np.mean(auc), "precision": 100 * np.mean(prec), "norm_precision": 100 * np.mean(nprec)}


def _png_title(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        return im.text.get("Title", "")


@pytest.mark.parametrize("protocol", ["grm", "official"])
def test_lasot_protocols_match_an_independent_computation(tmp_path, protocol):
    truth = _write_lasot(tmp_path / "LaSOT")
    preds = _predictions(truth, seed=1)
    results = _write_folder(tmp_path / "grm_results", preds, times=True)
    overrides = [f"data.roots.lasot={tmp_path / 'LaSOT'}"]
    if protocol != "grm":  # grm is the default
        overrides.append(f"eval.lasot_protocol={protocol}")
    run = load_run_config("grm", overrides)
    m = runner.run_score(run, "lasot", str(results), str(tmp_path / "scores"), tracker_name="GRM")
    ref = _reference_scores(truth, preds, protocol)
    for key in ("auc", "precision", "norm_precision"):
        assert m[key] == pytest.approx(ref[key], abs=1e-9), key
    other = _reference_scores(truth, preds, "official" if protocol == "grm" else "grm")
    assert abs(other["auc"] - ref["auc"]) > 1.0  # the two protocols do differ on these sequences
    # the protocol is named in metrics.json, results.md and every plot title
    saved = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert saved["protocol"] == protocol and saved["denominator"] == ("valid" if protocol == "grm" else "all")
    md = (tmp_path / "scores" / "results.md").read_text()
    assert f"LaSOT protocol: {protocol}" in md and md.startswith(f"# lasot (3 sequences, protocol {protocol})")
    for png in ("success_plot.png", "precision_plot.png", "norm_precision_plot.png"):
        assert f"protocol {protocol}" in _png_title(tmp_path / "scores" / png)


def test_score_a_subset_or_the_sequences_present(tmp_path, capsys):
    root = tmp_path / "LaSOT"
    truth = _write_lasot(root)
    results = _write_folder(tmp_path / "res", _predictions(truth, seed=2), times=True)
    base = ["--config", "grm", "--mode=score", "--dataset=lasot", f"--results={results}",
            f"--config.data.roots.lasot={root}"]

    # the root holds 3 of the 280 sequences: score those, with ONE warning line giving the counts
    assert cli.main([*base, f"--workdir={tmp_path / 'present'}"]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "277 of the 280 sequences are not in" in warnings[0], out
    md = (tmp_path / "present" / "results.md").read_text()
    assert "Sequences scored: 3 of the benchmark's 280 (the ones present in the dataset root; 277 missing" in md
    cov = json.loads((tmp_path / "present" / "metrics.json").read_text())["coverage"]
    assert cov["benchmark_sequences"] == 280 and cov["selected"] == "present" and len(cov["missing"]) == 277

    # --sequences is honoured: exactly those, no warning
    assert cli.main([*base, f"--workdir={tmp_path / 'two'}", "--sequences=basketball-1,airplane-1"]) == 0
    assert "warning:" not in capsys.readouterr().out
    m = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert sorted(m["per_sequence"]) == ["airplane-1", "basketball-1"] and m["num_sequences"] == 2
    assert "Sequences scored: 2 of the benchmark's 280 (the ones named by --sequences)" in \
        (tmp_path / "two" / "results.md").read_text()

    # a named sequence that is not there is an error naming its folder; an empty root too
    assert cli.main([*base, f"--workdir={tmp_path / 'x'}", "--sequences=airplane-13"]) == 2
    assert "airplane-13" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main([*base[:-1], f"--config.data.roots.lasot={tmp_path / 'empty'}", f"--workdir={tmp_path / 'y'}"]) == 2
    assert "none of its sequences" in capsys.readouterr().err


def _figures(monkeypatch) -> dict:
    """Captures every figure the report draws: {file name: Figure}."""
    figs = {}
    real = plots._save_figure

    def keep(fig, path, title):
        figs[Path(path).name] = fig
        return real(fig, path, title)

    monkeypatch.setattr(plots, "_save_figure", keep)
    return figs


def _line_styles(fig) -> dict:
    ax = fig.axes[0]
    return {line.get_label().split(" [")[0]: (line.get_color(), line.get_linestyle()) for line in ax.get_lines()}


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_each_tracker_keeps_its_style_and_legends_cover_no_curve(tmp_path, monkeypatch):
    truth = _write_lasot(tmp_path / "LaSOT")
    # "sized": right size, centre off by ~25 px -> better AUC; "centred": exact centre, half size -> better P@20
    sized = _write_folder(tmp_path / "sized", _predictions(truth, 3, shift=(16.0, 14.0), noise=1.0), times=True)
    centred = _write_folder(tmp_path / "centred", _predictions(truth, 4, scale=0.5, noise=1.0), times=False)
    figs = _figures(monkeypatch)
    run = load_run_config("grm", [f"data.roots.lasot={tmp_path / 'LaSOT'}"])
    out = runner.run_score(run, "lasot", f"centred={centred},sized={sized}", str(tmp_path / "cmp"))
    t = out["trackers"]
    assert t["sized"]["auc"] > t["centred"]["auc"] and t["centred"]["precision"] > t["sized"]["precision"]

    expected = plots.tracker_styles(["centred", "sized"])  # by the order given, not by rank
    assert expected["centred"] != expected["sized"]
    for name in ("success_plot.png", "precision_plot.png", "norm_precision_plot.png"):
        assert _line_styles(figs[name]) == {k: tuple(v) for k, v in expected.items()}, name
    from matplotlib.colors import to_hex

    for tracker in ("centred", "sized"):
        bars = figs[f"attributes_{tracker}.png"].axes[0].patches
        assert bars and {to_hex(b.get_facecolor()) for b in bars} == {expected[tracker].color}
    for name, fig in figs.items():  # every legend lies outside the axes: it covers no curve or bar
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        legend = ax.get_legend()
        assert legend is not None, name
        assert not _overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer)), name

    # a tracker without time files shows "–" for its speed, never nan
    row = next(line for line in (tmp_path / "cmp" / "results.md").read_text().splitlines()
               if line.startswith("| centred |"))
    assert row.rstrip().endswith("| \u2013 | \u2013 |") and "nan" not in row


# ------------------------------------------------------------------ README worked example

def _readme_example() -> str:
    text = README.read_text()
    start = text.index("### Compare with published trackers")
    return text[start:text.index("\n## ", start)]


def test_readme_compare_with_published_trackers(tmp_path, capsys):
    """The README's worked example on folders laid out like the released raw results: OSTrack's
    (``<tracker>/<param>/lasot/<seq>.txt``, tab-separated integers, no time files) and
    pytracking's (``<tracker>_<run>/<seq>.txt``), scored against our evaluation's folder."""
    section = _readme_example()
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    assert "--results=GRM=" in block and "OSTrack=" in block and "--mode=score" in block and "--dataset=lasot" in block
    root = tmp_path / "LaSOT"
    truth = _write_lasot(root)
    grm = _write_folder(tmp_path / "out" / "lasot", _predictions(truth, 5, noise=3.0), times=True)
    ostrack = _write_folder(tmp_path / "downloads" / "ostrack" / "vitb_384_mae_ce_32x4_ep300" / "lasot",
                            _predictions(truth, 6, noise=5.0), times=False)
    dimp = _write_folder(tmp_path / "downloads" / "dimp50_000", _predictions(truth, 7, noise=9.0), times=False,
                         delimiter=",")
    work = tmp_path / "out" / "lasot_vs_published"
    argv = ["--config", "grm", "--mode=score", "--dataset=lasot", f"--results=GRM={grm},OSTrack={ostrack},DiMP={dimp}",
            f"--workdir={work}", f"--config.data.roots.lasot={root}", "--config.eval.lasot_protocol=official",
            "--sequences=" + ",".join(NAMES)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "AUC per attribute" in printed and "warning:" not in printed
    for name in ("success_plot.png", "precision_plot.png", "norm_precision_plot.png", "attributes_GRM.png",
                 "attributes_OSTrack.png", "attributes_DiMP.png", "attributes.csv", "results.csv"):
        assert (work / name).is_file(), name
    md = (work / "results.md").read_text()
    assert "## Per-attribute AUC" in md and "| attribute | abbrev | sequences | GRM | OSTrack | DiMP |" in md
    assert "LaSOT protocol: official" in md
    metrics = json.loads((work / "metrics.json").read_text())
    assert list(metrics["trackers"]) == ["GRM", "OSTrack", "DiMP"] and metrics["protocol"] == "official"
    assert metrics["trackers"]["OSTrack"]["speed"]["toolkit_fps"] is None  # no time files: unknown, shown as "–"
