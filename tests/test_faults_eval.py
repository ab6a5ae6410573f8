"""Hostile inputs and faults around evaluation (issues 17.4 / 18.1 / 18.4 / 18.8): sequence names
that point outside the workdir, non-UTF-8 folder names, two evaluations into one workdir, SIGTERM
during an evaluation. Every test builds its hostile input itself."""
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import FIXTURES, timeout_s
from convert_weights import convert_grm_checkpoint
from grm_jax import load_model, save_model
from grm_jax.cli import main
from grm_jax.configuration import load_run_config
from grm_jax.errors import DataError, WorkdirError
from grm_jax.evaluate import runner
from grm_jax.evaluate.results import write_results
from grm_jax.io_utils import path_inside
from grm_jax.workdir_lock import EVALUATE_LOCK
from helpers import held_process, wait_for

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = timeout_s(150)  # generous: a loaded 2-core machine; nothing here waits on a clock otherwise


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
    return save_model(tmp_path_factory.mktemp("model") / "grm_tiny", config, variables)


@pytest.fixture(scope="module")
def config():
    return load_run_config(str(REPO / "configs" / "grm_tiny_cpu.py"))


def write_sequence(d: pathlib.Path, start: int, count: int) -> None:
    """``count`` frames of the track_tiny video from ``start`` + groundtruth.txt into folder ``d``."""
    data = np.load(FIXTURES / "track_tiny" / "frames.npz")
    frames, gt = data["frames"], data["gt_visible_xywh"]
    d.mkdir(parents=True)
    for i in range(count):
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frames[start + i], cv2.COLOR_RGB2BGR))
        (d / f"{i + 1:08d}.jpg").write_bytes(data.tobytes())  # (cv2.imwrite crashes on non-UTF-8 paths)
    (d / "groundtruth.txt").write_text("".join(",".join(f"{v:g}" for v in gt[start + i]) + "\n"
                                               for i in range(count)))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    for k, name in enumerate(("alpha", "beta", "gamma")):
        write_sequence(root / name, 4 * k, 3)
    return root


def _evaluate(args, capsys):
    code = main(["--config", "grm_tiny_cpu", "--mode=evaluate", *args])
    return code, capsys.readouterr().err


def test_list_traversal_refused_even_with_overwrite(tmp_path, model_dir, capsys):
    """18.1: a GOT-10k list.txt line ``../evilseq`` or an absolute path is refused naming the list
    file and line, with or without --overwrite; nothing is written or deleted outside the workdir,
    and the hint never suggests --overwrite."""
    root = tmp_path / "got10k"
    write_sequence(root / "val" / "GOT-10k_Val_000001", 0, 3)
    write_sequence(root / "evilseq", 0, 3)  # the folder ../evilseq points at, so the sequence "exists"
    workdir = tmp_path / "out"
    workdir.mkdir()
    victim = tmp_path / "evilseq.txt"  # <workdir>/../evilseq.txt: a user's file
    victim.write_text("precious\n")
    target = tmp_path / "abs" / "stolen"
    write_sequence(target, 0, 3)
    cases = {"../evilseq": 2, str(target): 2, "GOT-10k_Val_000001\x00x": 2, "..": 2}
    for bad, line in cases.items():
        (root / "val" / "list.txt").write_text(f"GOT-10k_Val_000001\n{bad}\n")
        for extra in ([], ["--overwrite"]):
            code, err = _evaluate([f"--config.data.roots.got10k={root}", "--dataset=got10k_val",
                                   f"--checkpoint={model_dir}", f"--workdir={workdir}", *extra], capsys)
            assert code == 2, err
            assert f"{root / 'val' / 'list.txt'}, line {line}: sequence name" in err and "not a plain name" in err
            assert "--overwrite" not in err and "Traceback" not in err
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abs", "evilseq.txt", "got10k", "out"]
    assert sorted(p.name for p in (tmp_path / "abs").iterdir()) == ["stolen"]
    assert list(workdir.iterdir()) == []  # refused before anything was written


def test_sequences_flag_and_writers_stay_inside(tmp_path, bench, model_dir, capsys):
    """18.1: --sequences=../x is refused the same way; the result writers themselves refuse a name
    that resolves outside their folder (also through a symlinked sub-folder)."""
    code, err = _evaluate([f"--dataset=folder:{bench}", f"--checkpoint={model_dir}", f"--workdir={tmp_path / 'w'}",
                           "--sequences=alpha,../beta"], capsys)
    assert code == 2 and "--sequences: sequence name '../beta' is not a plain name" in err, err
    out = tmp_path / "res"
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    for name in ("../x", "/etc/x", "link/x", "sub/../../x"):
        with pytest.raises(WorkdirError, match="refused to write outside the output folder"):
            write_results(out, name, np.ones((2, 4)), times=np.ones(2))
    assert list((tmp_path / "elsewhere").iterdir()) == [] and not (tmp_path / "x.txt").exists()
    assert path_inside(out, "seq.txt") == out / "seq.txt"


def test_non_utf8_folder_name_refused_before_tracking(tmp_path, model_dir, capsys):
    """18.8: a sequence folder whose name is not UTF-8 is refused before tracking, naming it."""
    root = tmp_path / "bench"
    write_sequence(root / "plain", 0, 2)
    bad = os.fsdecode(b"caf\xe9 seq")
    write_sequence(root / bad, 2, 2)
    code, err = _evaluate([f"--dataset=folder:{root}", f"--checkpoint={model_dir}", f"--workdir={tmp_path / 'w'}"],
                          capsys)
    assert code == 2 and "caf\\udce9 seq" in err and "not UTF-8" in err and "Traceback" not in err, err
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").glob("*.txt"))


def test_names_with_spaces_and_unicode_work(tmp_path, model_dir, config):
    """17.2: folder and frame names with spaces and non-ASCII (UTF-8) letters are plain names."""
    root = tmp_path / "bench"
    write_sequence(root / "my seq ü", 0, 3)
    for p in (root / "my seq ü").glob("*.jpg"):
        p.rename(p.with_name(f"frame {p.name}"))
    summary = runner.run_evaluate(config, str(model_dir), f"folder:{root}", str(tmp_path / "w"))
    assert summary["tracked"] == 1 and (tmp_path / "w" / "my seq ü.txt").is_file()


LOCK_HOLDER = """
import sys, time
from grm_jax.workdir_lock import EVALUATE_LOCK, WorkdirLock
lock = WorkdirLock.acquire(sys.argv[1], file_name=EVALUATE_LOCK, job="evaluation")
print("locked", flush=True)
time.sleep(600)
"""


def test_second_evaluation_into_same_workdir_refused(tmp_path, bench, model_dir, config, capsys):
    """18.4 / 17.4: while one evaluation holds the workdir, a second one (other threshold) is
    refused with one line naming the holder, and writes nothing; once the holder is gone its lock
    is stale and evaluation proceeds."""
    workdir = tmp_path / "w"
    workdir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(workdir)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = _evaluate([f"--dataset=folder:{bench}", f"--checkpoint={model_dir}", f"--workdir={workdir}",
                               "--threshold=0.4"], capsys)
        assert code == 2, err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert lines == [f"error: {workdir} is in use by another evaluation run: pid {holder.pid} on host "
                         + lines[0].split(" on host ", 1)[1]], err
        assert sorted(p.name for p in workdir.iterdir()) == [EVALUATE_LOCK]
    finally:
        holder.kill()
        holder.wait(timeout=timeout_s(60))
    summary = runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(workdir))
    assert summary["tracked"] == 3 and not (workdir / EVALUATE_LOCK).exists()


def test_concurrent_evaluations(tmp_path, bench, model_dir, config):
    """18.4: a second evaluation started (as a process) while the first one tracks is refused;
    the first finishes with its own settings only."""
    workdir = tmp_path / "w"
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    seen = []

    def start_second(name):
        if seen:
            return
        seen.append(subprocess.run(
            [sys.executable, "launch.py", "--config", "configs/grm_tiny_cpu.py", "--mode=evaluate",
             f"--checkpoint={model_dir}", f"--dataset=folder:{bench}", f"--workdir={workdir}", "--threshold=0.4"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT))

    summary = runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(workdir), threshold=0.0,
                                  on_sequence_done=start_second)
    second = seen[0]
    assert second.returncode == 2 and "is in use by another evaluation run" in second.stderr, second.stderr[-3000:]
    assert summary["tracked"] == 3 and summary["threshold"] == 0.0
    assert runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(workdir), threshold=0.0)["tracked"] == 0


HELD_EVAL = """
import os, pathlib, runpy, sys, time
from grm_jax.evaluate import results
real, hold = results.write_results, pathlib.Path(os.environ["HOLD_FILE"])
def write_results(*args, **kwargs):
    out = real(*args, **kwargs)
    pathlib.Path(os.environ["DONE_FILE"]).touch()
    while hold.exists():
        time.sleep(0.05)
    return out
results.write_results = write_results
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_during_evaluate_then_resume(tmp_path, bench, model_dir, config):
    """17.4: SIGTERM after the first finished sequence: exit 143 with one line, no temporary file or
    lock left, the finished sequence kept; the rerun tracks the rest and the box files are
    byte-identical to an uninterrupted run."""
    full = tmp_path / "full"
    runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(full))
    cut, hold, done = tmp_path / "cut", tmp_path / "hold", tmp_path / "done"
    hold.touch()
    cmd = [sys.executable, "-c", HELD_EVAL, "launch.py", "--config", "configs/grm_tiny_cpu.py", "--mode=evaluate",
           f"--checkpoint={model_dir}", f"--dataset=folder:{bench}", f"--workdir={cut}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", HOLD_FILE=str(hold), DONE_FILE=str(done))
    with held_process(cmd, cwd=REPO, env=env) as proc:
        wait_for(proc, done.exists, TIMEOUT)
        proc.terminate()  # SIGTERM
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM during --mode=evaluate"), err[-3000:]
    assert "Traceback" not in err
    assert not list(cut.glob(".*")) and not (cut / EVALUATE_LOCK).exists()
    assert len(list(cut.glob("*_time.txt"))) == 1
    summary = runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(cut))
    assert summary["tracked"] == 2
    for name in ("alpha", "beta", "gamma"):
        assert (cut / f"{name}.txt").read_bytes() == (full / f"{name}.txt").read_bytes()


def test_read_only_dataset_folder(tmp_path, bench, model_dir, config):
    """17.4: a read-only dataset folder is only read: evaluation works."""
    root = tmp_path / "ro"
    write_sequence(root / "seq", 0, 3)
    for p in [root, root / "seq", *(root / "seq").iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        summary = runner.run_evaluate(config, str(model_dir), f"folder:{root}", str(tmp_path / "w"))
        assert summary["tracked"] == 1
    finally:
        for p in [root, root / "seq"]:
            p.chmod(0o755)


def test_data_error_type_for_bad_names():
    from grm_jax.datasets.files import check_sequence_name

    for ok in ("a", "GOT-10k_Val_000001", "my seq", "über", "a..b", "...x"):
        assert check_sequence_name(ok, "x") == ok
    for bad in ("", " ", ".", "..", "a/b", "/abs", "a\\b", "a\x00b", "a\nb", os.fsdecode(b"\xff")):
        with pytest.raises(DataError, match="not a plain name"):
            check_sequence_name(bad, "list.txt")


def test_disk_full_during_results(tmp_path, bench, model_dir, config, monkeypatch):
    """17.4 / 18.8: the disk fills after the first finished sequence: one WorkdirError naming the
    workdir, no temporary file left, the finished sequence intact; after freeing space the same
    command resumes and the box files equal an uninterrupted run's."""
    from disk_full import small_disk

    full = tmp_path / "full"
    runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(full))
    with small_disk(tmp_path / "disk", monkeypatch) as disk:
        workdir = disk.path / "w"
        done = []

        def fill_after_first(name):
            done.append(name)
            disk.fill()

        with pytest.raises(WorkdirError, match="no space left on the device") as err:
            runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(workdir),
                                on_sequence_done=fill_after_first)
        assert str(err.value).startswith(f"{workdir}: ") and "nothing was half-written" in str(err.value)
        assert done == ["alpha"] and not [p for p in workdir.iterdir() if p.name.startswith(".")]
        assert (workdir / "alpha.txt").read_bytes() == (full / "alpha.txt").read_bytes()
        disk.free()
        assert runner.run_evaluate(config, str(model_dir), f"folder:{bench}", str(workdir))["tracked"] == 2
        for name in ("alpha", "beta", "gamma"):
            assert (workdir / f"{name}.txt").read_bytes() == (full / f"{name}.txt").read_bytes()


def test_disk_full_during_an_export_like_write(tmp_path, monkeypatch):
    """17.4: a writer filling a temporary file (np.savez into AtomicFiles.path, as the exporters do)
    hits a full disk: WorkdirError naming the folder, the previous files intact, no temporary file."""
    from disk_full import small_disk
    from grm_jax.io_utils import AtomicFiles, atomic_write_bytes

    with small_disk(tmp_path / "disk", monkeypatch, size="1m") as disk:
        out_dir = disk.path / "export"
        atomic_write_bytes(out_dir / "export.json", b"{}\n")
        disk.fill()
        with pytest.raises(WorkdirError, match=f"^{out_dir}: no space left on the device .* variables.npz"):
            with AtomicFiles() as out:
                with open(out.path(out_dir / "variables.npz"), "wb") as fh:
                    np.savez(fh, w=np.zeros(1 << 20, np.float32))
                    fh.flush()
                    os.fsync(fh.fileno())
                out.write_bytes(out_dir / "export.json", b'{"new": 1}\n')
        assert sorted(p.name for p in out_dir.iterdir()) == ["export.json"]
        assert (out_dir / "export.json").read_bytes() == b"{}\n"


GOOD = "30,40,50,60"
REFUSED_ANNOTATIONS = {  # groundtruth.txt lines -> the message (every one names the file or folder)
    "more": ([GOOD] * 5, "groundtruth.txt: 5 ground-truth lines but 4 frames"),
    "fewer": ([GOOD] * 3, "groundtruth.txt: 3 ground-truth lines but 4 frames"),
    "extra_columns": (["30,40,50,60,7"] + [GOOD] * 3, "groundtruth.txt, line 1: expected 4 numbers, got 5"),
    "empty": ([], "groundtruth.txt: no boxes"),
    "words": ([GOOD, "30,forty,50,60", GOOD, GOOD], "groundtruth.txt, line 2: cannot parse numbers"),
    "negative_first": (["30,40,-50,60"] + [GOOD] * 3, "first ground-truth box [30.0, 40.0, -50.0, 60.0]: w = -50.0 "
                                                      "must be > 0"),
    "nan_first": (["nan,nan,nan,nan"] + [GOOD] * 3, "first ground-truth box [nan, nan, nan, nan]: x = nan is not"),
}
SCORED_ANNOTATIONS = {  # lines -> invalid rows after frame 1 (not scored, one warning)
    "semicolons": (["30;40;50;60", "30; 40; 50; 60", "30;40;50;60", "30;40;50;60"], 0),
    "negative_later": ([GOOD, GOOD, "30,40,-5,60", GOOD], 1),
    "nan_later": ([GOOD, "nan,nan,nan,nan", "NaN NaN NaN NaN", GOOD], 2),
    "zeros_later": ([GOOD, "0,0,0,0", "0,0,0,0", "0,0,0,0"], 3),
}


def test_annotation_files_refused_naming_the_line(tmp_path, model_dir, capsys):
    """17.3: malformed ground truth is refused before any model is loaded, naming the file / line
    (or, for the first box, the sequence and its folder)."""
    for name, (lines, message) in REFUSED_ANNOTATIONS.items():
        root = tmp_path / name
        write_sequence(root / "seq", 0, 4)
        (root / "seq" / "groundtruth.txt").write_text("".join(ln + "\n" for ln in lines))
        code, err = _evaluate([f"--dataset=folder:{root}", f"--checkpoint={model_dir}",
                               f"--workdir={tmp_path / ('out_' + name)}"], capsys)
        assert code == 2 and message in err and "Traceback" not in err, (name, err)
        assert str(root / "seq") in err, (name, err)
        assert not (tmp_path / ("out_" + name)).exists() or not any((tmp_path / ("out_" + name)).glob("*.txt"))


def test_annotation_rows_without_box_are_not_scored(tmp_path, model_dir, capsys):
    """17.3 / 18.7: semicolons are separators; rows after frame 1 with w or h <= 0 or NaN are invalid
    frames: not scored, one warning naming the sequence; no score exceeds 100% (ground truth
    0,0,0,0 after frame 1 used to give NP 500%)."""
    import json

    for name, (lines, invalid) in SCORED_ANNOTATIONS.items():
        root = tmp_path / name
        write_sequence(root / "seq", 0, 4)
        (root / "seq" / "groundtruth.txt").write_text("".join(ln + "\n" for ln in lines))
        workdir = tmp_path / ("out_" + name)
        code = main(["--config", "grm_tiny_cpu", "--mode=evaluate", f"--dataset=folder:{root}",
                     f"--checkpoint={model_dir}", f"--workdir={workdir}"])
        out = capsys.readouterr().out
        assert code == 0, (name, out)
        metrics = json.loads((workdir / "metrics.json").read_text())
        assert all(0 <= metrics[k] <= 100 for k in ("auc", "precision", "norm_precision", "op50", "op75")), metrics
        assert metrics["per_sequence"]["seq"]["num_valid"] == 4 - invalid
        warned = f"warning: {invalid} ground-truth row(s) of 1 sequence(s) after the first frame have no box"
        assert (warned in out) == bool(invalid), (name, out)
