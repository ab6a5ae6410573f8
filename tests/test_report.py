"""Reports (grm_jax/evaluate/report.py): score_results on fake and real sequences, plots, tables."""
import json

import cv2
import numpy as np
import pytest

from grm_jax.evaluate import report as RP
from grm_jax.datasets import load_benchmark
from grm_jax.evaluate.results import write_results
from helpers import score_results


def _fake_got_val(root, n_frames=6):
    sdir = root / "val" / "GOT-10k_Val_000001"
    sdir.mkdir(parents=True)
    img = np.zeros((60, 80, 3), np.uint8)
    for i in range(1, n_frames + 1):
        cv2.imwrite(str(sdir / f"{i:08d}.jpg"), img)
    gt = np.array([[10 + i, 10, 20, 20] for i in range(n_frames)], float)
    np.savetxt(sdir / "groundtruth.txt", gt, fmt="%d", delimiter=",")
    (sdir / "cover.label").write_text("\n".join(["8"] * n_frames) + "\n")
    (sdir / "absence.label").write_text("\n".join(["0"] * n_frames) + "\n")
    (root / "val" / "list.txt").write_text("GOT-10k_Val_000001\n")
    return gt


def test_score_results_got10k_val(tmp_path):
    gt = _fake_got_val(tmp_path / "data")
    seqs = load_benchmark("got10k_val", tmp_path / "data")
    write_results(tmp_path / "res", "GOT-10k_Val_000001", gt, times=np.full(len(gt), 0.04))
    out = score_results(seqs, tmp_path / "res", tmp_path / "out", "perfect")
    for name in ("metrics.json", "success_plot.png", "precision_plot.png", "norm_precision_plot.png",
                 "results.md", "results.csv"):
        assert (tmp_path / "out" / name).is_file(), name
    assert (tmp_path / "out" / "success_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for k in ("auc", "precision", "norm_precision", "op50", "op75", "ao", "sr50", "sr75", "per_sequence", "fps"):
        assert k in m, k
    assert m["ao"] == pytest.approx(100.0) and m["sr75"] == pytest.approx(100.0)
    assert m["auc"] == pytest.approx(100 * 20 / 21) and m["precision"] == pytest.approx(100.0)
    assert m["fps"] == pytest.approx(25.0)
    assert m["per_sequence"]["GOT-10k_Val_000001"]["got10k_ao"] == pytest.approx(100.0)
    assert out["tracker"] == "perfect" and out["benchmark"] == "got10k_val"
    md = (tmp_path / "out" / "results.md").read_text()
    assert md.startswith("# got10k_val (1 sequences)") and "| perfect | 1 | 95.24 |" in md
    assert "](success_plot.png)" in md and "(per_sequence_perfect.csv)" in md
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert rows[0] == "tracker,num_sequences,auc,precision,norm_precision,op50,op75,ao,sr50,sr75,toolkit_fps,frames_per_s"
    assert rows[1].startswith("perfect,1,") and rows[1].endswith(",25.0,")  # no timing.json: frames/s unknown
    per = (tmp_path / "out" / "per_sequence_perfect.csv").read_text().splitlines()
    assert per[0].startswith("sequence,auc,") and per[1].startswith("GOT-10k_Val_000001,")
    assert m["speed"]["toolkit_fps"] == pytest.approx(25.0) and m["speed"]["frames_per_s"] is None


def test_score_results_errors(tmp_path):
    gt = _fake_got_val(tmp_path / "data")
    seqs = load_benchmark("got10k_val", tmp_path / "data")
    (tmp_path / "res").mkdir()
    with pytest.raises(ValueError, match="missing result file for sequence 'GOT-10k_Val_000001'"):
        score_results(seqs, tmp_path / "res", tmp_path / "out", "t")
    with pytest.raises(ValueError, match="no result files"):
        score_results(seqs, tmp_path / "res", tmp_path / "out", "t", skip_missing=True)
    write_results(tmp_path / "res", "GOT-10k_Val_000001", gt[:-1])
    with pytest.raises(ValueError, match="GOT-10k_Val_000001"):
        score_results(seqs, tmp_path / "res", tmp_path / "out", "t")


def test_plots_and_tables(tmp_path):
    curves = {"a": np.linspace(100, 0, 21), "b": np.linspace(90, 0, 21)}
    p = RP.plot_success(curves, tmp_path / "s.png")
    assert p.is_file() and p.stat().st_size > 1000
    p = RP.plot_attribute_bars([("Illumination Variation (3)", 55.5), ("Deformation (0)", float("nan"))],
                               tmp_path / "bars.png", "t: AUC per attribute", overall=50.0)
    assert p.read_bytes()[:4] == b"\x89PNG"
    p = RP.plot_precision({"a": np.linspace(0, 100, 51)}, tmp_path / "p.png", normalized=True)
    assert p.is_file()
    rows = [{"sequence": "x", "auc": 50.123, "precision": float("nan")}]
    md = RP.markdown_table(rows, ["sequence", "auc", "precision"])
    assert "| x | 50.12 | \u2013 |" in md  # not known: an en dash, never "nan"
    RP.write_metrics_json({"a": np.arange(3), "b": np.float32(1.5), "c": float("inf")}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [0, 1, 2], "b": 1.5, "c": None}


def test_score_results_real_sequences(tmp_path, real_sequences):
    seqs = load_benchmark("folder", real_sequences)[:2]
    for s in seqs:
        pred = s.ground_truth.copy()
        pred[1:, 0] += 3.0
        write_results(tmp_path / "res", s.name, pred, fmt="float")
    out = score_results(seqs, tmp_path / "res", tmp_path / "out", "shifted")
    assert 0 < out["auc"] < 100 * 20 / 21 and out["precision"] == pytest.approx(100.0)
    assert "ao" not in out
    assert set(out["per_sequence"]) == {s.name for s in seqs}
