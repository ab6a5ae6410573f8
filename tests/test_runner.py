"""launch.py modes evaluate / track / score on a tiny fake benchmark: resume after a crash, the run
manifest (no mixing of models or settings, --overwrite), unreadable frames, the two speeds,
comparison reports of several trackers."""
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import FIXTURES, timeout_s
from convert_weights import convert_grm_checkpoint
from grm_jax import checkpoint as ckpt_lib
from grm_jax import load_model, save_model
from grm_jax.configuration import load_run_config
from grm_jax.errors import DataError, WorkdirError
from grm_jax.evaluate import manifest, runner
from grm_jax.evaluate.results import write_results

REPO = pathlib.Path(__file__).resolve().parents[1]
TT = FIXTURES / "track_tiny"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
    return save_model(tmp_path_factory.mktemp("model") / "grm_tiny", config, variables)


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(model_dir)


@pytest.fixture(scope="module")
def config():
    return load_run_config(str(REPO / "configs" / "grm_tiny_cpu.py"))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """folder benchmark: 4 sequences cut from the track_tiny video, different lengths and sizes."""
    data = np.load(TT / "frames.npz")
    frames, gt = data["frames"], data["gt_visible_xywh"]
    root = tmp_path_factory.mktemp("bench")
    cuts = {"alpha": (0, 6, None), "beta": (4, 7, (200, 160)), "gamma": (10, 18, None), "delta": (20, 22, None)}
    for name, (a, b, size) in cuts.items():
        d = root / name
        d.mkdir()
        lines = []
        for i in range(a, b):
            f, box = frames[i], gt[i].copy()
            if size is not None:  # crop the top-left part: another image size
                f = f[:size[1], :size[0]]
            cv2.imwrite(str(d / f"{i - a + 1:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            lines.append(",".join(f"{v:g}" for v in box))
        (d / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    return root


def _box_files(d):
    return {p.name: p.read_text() for p in sorted(pathlib.Path(d).glob("*.txt"))
            if not p.name.endswith("_time.txt") and p.stem in ("alpha", "beta", "gamma", "delta")}


def test_evaluate_resume_and_score(tmp_path, model_dir, loaded, config, bench):
    dataset = f"folder:{bench}"
    full = tmp_path / "full"
    summary = runner.run_evaluate(config, str(model_dir), dataset, str(full), model_and_variables=loaded)
    assert summary["tracked"] == 4
    for name in ("alpha", "beta", "gamma", "delta"):
        assert (full / f"{name}.txt").is_file() and (full / f"{name}_time.txt").is_file()
    metrics = json.loads((full / "metrics.json").read_text())
    for key in ("auc", "precision", "norm_precision", "op50", "op75", "fps", "per_sequence", "curves"):
        assert key in metrics
    assert (full / "success_plot.png").is_file() and (full / "results.md").is_file()
    # both speeds, labelled; this run's frames/s excludes the compile time and equals the recorded session
    sp = metrics["speed"]
    assert sp["toolkit_fps"] == metrics["fps"] and set(sp["definitions"]) == {"toolkit_fps", "frames_per_s"}
    # compile_s may be 0: another test in this worker may have compiled the same step already
    assert sp["frames"] == 19 and 0 <= sp["compile_s"] < sp["tracking_s"] and sp["sessions"] == 1
    assert sp["frames_per_s"] == pytest.approx(19 / (sp["tracking_s"] - sp["compile_s"]), rel=1e-3)
    this_run = summary["speed"]["this_run"]
    assert this_run["frames"] == 19 and this_run["frames_per_s"] == pytest.approx(sp["frames_per_s"], rel=1e-3)
    md = (full / "results.md").read_text()
    assert "](success_plot.png)" in md and "](norm_precision_plot.png)" in md and "frames/s (wall" in md
    assert json.loads((full / "run_manifest.json").read_text())["threshold"] == 0.0

    # crash after the first finished sequence, then resume
    part = tmp_path / "part"
    done = []

    def crash(name):
        done.append(name)
        raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        runner.run_evaluate(config, str(model_dir), dataset, str(part), on_sequence_done=crash,
                            model_and_variables=loaded)
    assert len(done) == 1 and len(_box_files(part)) == 1
    first = part / f"{done[0]}.txt"
    before = (first.stat().st_mtime_ns, (part / f"{done[0]}_time.txt").read_text())
    redo = []
    summary = runner.run_evaluate(config, str(model_dir), dataset, str(part), on_sequence_done=redo.append,
                                  model_and_variables=loaded)
    assert done[0] not in redo and sorted(redo + done) == sorted(["alpha", "beta", "gamma", "delta"])
    assert summary["tracked"] == 3
    assert (first.stat().st_mtime_ns, (part / f"{done[0]}_time.txt").read_text()) == before
    assert _box_files(part) == _box_files(full)
    assert not list(part.glob(".*.tmp"))

    # a third run tracks nothing
    assert runner.run_evaluate(config, str(model_dir), dataset, str(part), model_and_variables=loaded)["tracked"] == 0

    # score mode on any results folder
    scored = tmp_path / "scored"
    m = runner.run_score(config, dataset, str(full), str(scored), tracker_name="tiny")
    assert json.loads((scored / "metrics.json").read_text())["auc"] == pytest.approx(m["auc"])
    assert m["auc"] == pytest.approx(metrics["auc"])


def test_threshold_and_dataset_resolution(config, bench):
    from grm_jax.track_settings import resolve_threshold, with_override

    assert resolve_threshold(config, None, "lasot") == 0.4
    assert resolve_threshold(config, None, "uav123") == 0.55
    assert resolve_threshold(config, None, "got10k_test") == 0.0
    assert resolve_threshold(with_override(config, "threshold", 0.1), None, "lasot") == 0.1
    assert runner.resolve_benchmark(config, f"folder:{bench}") == ("folder", bench)
    with pytest.raises(ValueError, match="config.data.roots.lasot"):
        runner.resolve_benchmark(config, "lasot")
    with pytest.raises(ValueError, match="unknown dataset"):
        runner.resolve_benchmark(config, "lasott")


def _with(config, **sections):
    """config with fields of its sections replaced: _with(c, eval={"on_bad_frame": "skip"})."""
    return config.replace(**{k: dataclasses.replace(getattr(config, k), **v) for k, v in sections.items()})


def test_manifest_refuses_other_runs_and_overwrite(tmp_path, model_dir, loaded, config, bench):
    dataset, seqs, out = f"folder:{bench}", ["delta", "beta"], tmp_path / "eval"

    def evaluate(cfg=config, **kw):
        return runner.run_evaluate(cfg, str(model_dir), dataset, str(out), sequences=seqs,
                                   model_and_variables=loaded, **kw)

    assert evaluate()["tracked"] == 2
    first = (out / "delta.txt").read_text()
    with pytest.raises(WorkdirError, match=r"threshold: 0\.0 -> 0\.3") as err:
        evaluate(threshold=0.3)
    assert "--overwrite" in err.value.hint and "new --workdir" in err.value.hint
    with pytest.raises(WorkdirError, match="result_format: int -> float"):
        evaluate(_with(config, eval={"result_format": "float"}))
    assert (out / "delta.txt").read_text() == first  # refused runs touch nothing
    assert evaluate()["tracked"] == 0  # same settings: resume

    (out / "notes.txt").write_text("mine")  # not ours: --overwrite leaves it
    done = []
    summary = evaluate(threshold=0.3, overwrite=True, on_sequence_done=done.append)
    assert summary["tracked"] == 2 and sorted(done) == sorted(seqs)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run_manifest.json").read_text())["threshold"] == 0.3
    assert len(json.loads((out / "timing.json").read_text())["sessions"]) == 1  # old timing deleted too

    legacy = tmp_path / "legacy"  # results without a manifest (an older grm-jax, another tool)
    legacy.mkdir()
    shutil.copy(out / "delta.txt", legacy / "delta.txt")
    with pytest.raises(WorkdirError, match="no run_manifest.json"):
        runner.run_evaluate(config, str(model_dir), dataset, str(legacy), sequences=seqs, model_and_variables=loaded)


def test_checkpoint_identity(tmp_path, model_dir):
    ident = manifest.checkpoint_identity(model_dir)
    moved = pathlib.Path(shutil.copytree(model_dir, tmp_path / "moved"))
    assert manifest.differences({"checkpoint": ident}, {"checkpoint": manifest.checkpoint_identity(moved)}) == []
    listing = moved / ckpt_lib.MANIFEST_FILE  # other weights <=> another weights list
    text = listing.read_text()
    listing.write_text(("0" if text[0] != "0" else "1") + text[1:])
    assert manifest.checkpoint_identity(moved)["weights_sha256"] != ident["weights_sha256"]
    cfg = json.loads((moved / ckpt_lib.CONFIG_FILE).read_text())
    cfg["drop_path_rate"] = 0.5
    (moved / ckpt_lib.CONFIG_FILE).write_text(json.dumps(cfg))
    diff = manifest.differences({"checkpoint": ident}, {"checkpoint": manifest.checkpoint_identity(moved)})
    assert any(d.startswith("checkpoint.model_config_sha256") for d in diff)
    # a training workdir: the latest step's weight files by name, size and time
    train = tmp_path / "run"
    train.mkdir()
    shutil.copy(model_dir / ckpt_lib.CONFIG_FILE, train / ckpt_lib.CONFIG_FILE)
    shutil.copytree(model_dir / ckpt_lib.VARIABLES_DIR, ckpt_lib.step_dir(train, 7) / ckpt_lib.ITEM_VARIABLES)
    step7 = manifest.checkpoint_identity(train)
    assert step7["weights_kind"] == "file metadata of step 7"
    shutil.copytree(model_dir / ckpt_lib.VARIABLES_DIR, ckpt_lib.step_dir(train, 9) / ckpt_lib.ITEM_VARIABLES)
    assert manifest.checkpoint_identity(train)["weights_sha256"] != step7["weights_sha256"]


def test_unreadable_frames(tmp_path, model_dir, loaded, config, bench, capsys):
    root = tmp_path / "bad"
    shutil.copytree(bench / "gamma", root / "gamma")
    (root / "gamma" / "00004.jpg").write_bytes(b"not a jpeg")  # frame index 3
    dataset = f"folder:{root}"
    with pytest.raises(DataError, match="00004.jpg") as err:
        runner.run_evaluate(config, str(model_dir), dataset, str(tmp_path / "stop"), model_and_variables=loaded)
    assert "--on_bad_frame=skip" in err.value.hint and "carries the previous box" in err.value.hint

    skip = _with(config, eval={"on_bad_frame": "skip", "result_format": "float"})
    summary = runner.run_evaluate(skip, str(model_dir), dataset, str(tmp_path / "skip"), model_and_variables=loaded)
    assert summary["bad_frame_count"] == 1 and [r["frame"] for r in summary["bad_frames"]["gamma"]] == [3]
    assert "00004.jpg" in summary["bad_frames"]["gamma"][0]["error"]
    on_disk = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert on_disk["bad_frames"] == summary["bad_frames"]
    lines = (tmp_path / "skip" / "gamma.txt").read_text().splitlines()
    assert len(lines) == 8 and lines[3] == lines[2]  # the previous box is carried over the bad frame
    assert "1 unreadable frame(s) in 1 sequence(s)" in capsys.readouterr().out

    (root / "gamma" / "00001.jpg").write_bytes(b"")  # the first frame cannot be skipped
    with pytest.raises(DataError, match="00001.jpg") as err:
        runner.run_evaluate(skip, str(model_dir), dataset, str(tmp_path / "first"), model_and_variables=loaded)
    assert "except the first frame" in err.value.hint


def test_score_compares_trackers(tmp_path, config, bench):
    """Two trackers' folders -> one report; each row equals that tracker scored alone."""
    from grm_jax.datasets import load_benchmark

    seqs = load_benchmark("folder", bench)
    folders = {}
    for name, shift in (("near", 2.0), ("far", 9.0)):
        folders[name] = tmp_path / name
        for s in seqs:
            pred = s.ground_truth.copy()
            pred[1:, :2] += shift
            write_results(folders[name], s.name, pred, times=np.full(len(s), 0.02), fmt="float")
    dataset = f"folder:{bench}"
    alone = {n: runner.run_score(config, dataset, str(d), str(tmp_path / f"alone_{n}"), tracker_name=n)
             for n, d in folders.items()}
    out = tmp_path / "both"
    both = runner.run_score(config, dataset, f"far={folders['far']},near={folders['near']}", str(out))
    for name in folders:
        for key in ("auc", "precision", "norm_precision", "op50", "op75", "fps"):
            assert both["trackers"][name][key] == pytest.approx(alone[name][key], abs=1e-9), (name, key)
    for png in ("success_plot.png", "precision_plot.png", "norm_precision_plot.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("tracker,num_sequences,auc,") and [r.split(",")[0] for r in rows[1:]] == ["near", "far"]
    assert float(rows[1].split(",")[2]) == pytest.approx(alone["near"]["auc"], abs=1e-9)
    assert (out / "per_sequence_near.csv").is_file() and (out / "per_sequence_far.csv").is_file()
    assert set(json.loads((out / "metrics.json").read_text())["trackers"]) == {"near", "far"}
    # a tracker without results for a sequence: both are scored on the common sequences
    (folders["far"] / "alpha.txt").unlink()
    part = runner.run_score(config, dataset, f"near={folders['near']},far={folders['far']}", str(tmp_path / "part"))
    assert {m["num_sequences"] for m in part["trackers"].values()} == {3}
    with pytest.raises(FileNotFoundError, match="nowhere"):
        runner.run_score(config, dataset, f"x={tmp_path / 'nowhere'}", str(tmp_path / "x"))


def test_cli_flags_score_and_overwrite(tmp_path, model_dir, bench, capsys):
    """The command line: --results=name=dir,... compares; a workdir of another run is refused (exit 2)
    with the way out, before any model is loaded; --on_bad_frame is accepted."""
    from grm_jax.cli import main

    for name in ("a", "b"):
        for seq in ("alpha", "beta", "gamma", "delta"):
            gt = np.loadtxt(bench / seq / "groundtruth.txt", delimiter=",", ndmin=2)
            write_results(tmp_path / name, seq, gt + (name == "b"), fmt="float")
    base = ["--config", "grm_tiny_cpu", f"--dataset=folder:{bench}"]
    assert main([*base, "--mode=score", f"--results=a={tmp_path / 'a'},b={tmp_path / 'b'}",
                 f"--workdir={tmp_path / 'cmp'}"]) == 0
    assert (tmp_path / "cmp" / "success_plot.png").is_file() and "| a | 4 |" in capsys.readouterr().out

    other = tmp_path / "other"
    write_results(other, "alpha", np.ones((6, 4)), times=np.full(6, 0.1))
    (other / "run_manifest.json").write_text(json.dumps({"format": 1, "threshold": 0.5}))
    args = [*base, "--mode=evaluate", f"--checkpoint={model_dir}", f"--workdir={other}", "--on_bad_frame=skip"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds results of a different run" in err and "threshold: 0.5 -> 0.0" in err and "--overwrite" in err


def test_track_mode(tmp_path, model_dir, loaded, config, bench):
    out = tmp_path / "track"
    r = runner.run_track(config, str(model_dir), str(bench / "gamma"), "80,84,40,32", str(out),
                         show_division=True, overlay_layers=["1", "3"], model_and_variables=loaded)
    boxes = np.loadtxt(out / "boxes.txt", delimiter=",")
    assert boxes.shape == (8, 4)
    np.testing.assert_allclose(boxes[0], [80, 84, 40, 32])
    assert np.isfinite(boxes).all()
    cap = cv2.VideoCapture(str(out / "tracked.mp4"))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    cap.release()
    assert n == 8 and shape[1] > 320  # frame + division side panel
    assert r["ea_fractions"].shape == (8, 2) and r["overlay_layers"] == [1, 3]
    with pytest.raises(ValueError, match="not dividing blocks"):
        runner.run_track(config, str(model_dir), str(bench / "gamma"), "80,84,40,32", str(out),
                         show_division=True, overlay_layers=["0"], model_and_variables=loaded)
    with pytest.raises(ValueError, match="h = 0.0"):
        runner.run_track(config, str(model_dir), str(bench / "gamma"), "80,84,40,0", str(out),
                         model_and_variables=loaded)


@pytest.mark.multiprocess
def test_launch_track_subprocess(tmp_path, model_dir, bench):
    """launch.py end to end (flag wiring) once, in a subprocess."""
    out = tmp_path / "launch"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "launch.py", "--config", "configs/grm_tiny_cpu.py", "--mode=track",
         f"--checkpoint={model_dir}", f"--video={bench / 'delta'}", "--init_box=150,120,40,32",
         f"--workdir={out}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s(300))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.loadtxt(out / "boxes.txt", delimiter=",").shape == (2, 4)
    assert (out / "tracked.mp4").stat().st_size > 0


def test_got10k_test_submission(tmp_path, model_dir, loaded, bench):
    import zipfile

    data = np.load(TT / "frames.npz")
    split = tmp_path / "GOT10k" / "test"
    for name, (a, b) in {"GOT-10k_Test_000001": (0, 4), "GOT-10k_Test_000002": (5, 8)}.items():
        d = split / name
        d.mkdir(parents=True)
        for i in range(a, b):
            cv2.imwrite(str(d / f"{i - a + 1:08d}.jpg"), cv2.cvtColor(data["frames"][i], cv2.COLOR_RGB2BGR))
        (d / "groundtruth.txt").write_text(",".join(f"{v:g}" for v in data["gt_visible_xywh"][a]) + "\n")
    (split / "list.txt").write_text("GOT-10k_Test_000001\nGOT-10k_Test_000002\n")
    cfg = load_run_config(str(REPO / "configs" / "grm_tiny_cpu.py"))
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, roots={**cfg.data.roots, "got10k": str(tmp_path / "GOT10k")}))
    out = tmp_path / "eval"
    summary = runner.run_evaluate(cfg, str(model_dir), "got10k_test", str(out), tracker_name="tiny",
                                  model_and_variables=loaded)
    assert summary["threshold"] == 0.0
    with zipfile.ZipFile(summary["submission"]) as zf:
        names = set(zf.namelist())
        assert "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt" in names
        assert "GOT-10k_Test_000002/GOT-10k_Test_000002_time.txt" in names
        lines = zf.read("GOT-10k_Test_000002/GOT-10k_Test_000002_001.txt").decode().splitlines()
    assert len(lines) == 3 and lines[0].count(",") == 3
