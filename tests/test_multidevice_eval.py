"""Evaluation over 1 device, 8 CPU devices and 2 processes x 2 devices (jax.distributed, gloo) gives
byte-identical result files on a small synthetic 'folder' benchmark (tiny fixture model), with the
work split as recorded in summary.json; a re-run resumes per sequence."""
import json
import sys

import cv2
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.checkpoint import save_model
from grm_jax.datasets import load_benchmark
from grm_jax.evaluate.distribute import split_sequences
from grm_jax.evaluate.runner import run_evaluate
from grm_jax.model import GRM
from grm_jax.run_config import EvalConfig, RunConfig
from helpers import track_sequences
from train_utils import run_processes

FRAMES = {"a": 7, "b": 3, "c": 5, "d": 4, "e": 6}  # sequence name -> frame count

# One evaluation process: the config the in-process runs use, floats in the result files.
WORKER = """
import sys
from grm_jax.evaluate.runner import run_evaluate
from grm_jax.model import GRM
from grm_jax.run_config import EvalConfig, RunConfig
config = RunConfig().replace(eval=EvalConfig(result_format="float"))
run_evaluate(config, checkpoint=sys.argv[1], dataset="folder:" + sys.argv[2], workdir=sys.argv[3], threshold=0.0)
"""


def _config():
    return RunConfig().replace(eval=EvalConfig(result_format="float"))


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """root/<seq>/00001.jpg ... + groundtruth.txt: a bright square drifting over a smooth background."""
    root = tmp_path_factory.mktemp("folder_bench")
    rng = np.random.default_rng(0)
    for k, (name, n) in enumerate(FRAMES.items()):
        h, w = 90 + 10 * k, 120 - 6 * k
        bg = cv2.resize(rng.integers(0, 255, (5, 6, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        x, y, side = 20.0 + k, 25.0, 18
        lines = []
        (root / name).mkdir()
        for i in range(n):
            f = bg.copy()
            f[int(y):int(y) + side, int(x):int(x) + side] = 230
            cv2.imwrite(str(root / name / f"{i + 1:05d}.jpg"), f)
            lines.append(f"{x},{y},{side},{side}")
            x, y = x + rng.normal(0, 2), y + rng.normal(0, 2)
        (root / name / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def tiny():
    return convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("models") / "grm_tiny"
    save_model(out, *tiny)
    return out


def _result_bytes(workdir):
    return {name: (workdir / f"{name}.txt").read_bytes() for name in FRAMES}


def test_split_is_deterministic_and_balanced(benchmark):
    seqs = load_benchmark("folder", benchmark)
    shares = split_sequences(seqs, 2)
    # the same sets whatever the input order (every process lists the benchmark itself)
    assert [sorted(s) for s in shares] == [sorted(s) for s in split_sequences(list(reversed(seqs)), 2)]
    assert sorted(sum(shares, [])) == sorted(FRAMES)
    totals = [sum(FRAMES[n] for n in share) for share in shares]
    assert abs(totals[0] - totals[1]) <= max(FRAMES.values())
    assert split_sequences(seqs, 1) == [[s.name for s in seqs]]
    assert len(split_sequences(seqs, 8)) == 8  # more processes than sequences: some shares are empty


@pytest.mark.parametrize("options", [{"lanes": 2, "prefetch": 0}, {"lanes": 2, "prefetch": 3, "shrink": False},
                                     {"lanes": 1, "prefetch": 1, "num_threads": 1}])
@pytest.mark.slow
def test_pipeline_options_keep_boxes(benchmark, tiny, options):
    """Two lanes in flight, prefetch depth and sharding over 2 devices per lane change no box."""
    import jax

    config, variables = tiny
    seqs = load_benchmark("folder", benchmark)
    want = track_sequences(GRM(config), variables, seqs, None, 0.0, batch_size=4, lanes=1,
                           devices=jax.local_devices()[:1])
    got = track_sequences(GRM(config), variables, seqs, None, 0.0, batch_size=4, **options)
    for s in seqs:
        np.testing.assert_array_equal(got[s.name].boxes, want[s.name].boxes, err_msg=s.name)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_one_vs_eight_devices_vs_two_processes(tmp_path, benchmark, model_dir):
    import jax

    assert jax.local_device_count() == 8  # tests/conftest.py
    runs = {"1dev": (tmp_path / "one", 1), "8dev": (tmp_path / "eight", None)}
    for workdir, devices in runs.values():
        summary = run_evaluate(_config(), checkpoint=str(model_dir), dataset=f"folder:{benchmark}",
                               workdir=workdir, threshold=0.0, max_local_devices=devices)
        assert summary["tracked"] == len(FRAMES)
    multi = tmp_path / "multi"
    logs = run_processes([sys.executable, "-c", WORKER, str(model_dir), str(benchmark), str(multi)], tmp_path)

    seqs = load_benchmark("folder", benchmark)
    want = _result_bytes(runs["1dev"][0])
    for workdir, devices, processes in ((runs["1dev"][0], 1, 1), (runs["8dev"][0], 8, 1), (multi, 4, 2)):
        assert _result_bytes(workdir) == want, workdir
        summary = json.loads((workdir / "summary.json").read_text())
        assert (summary["devices"], summary["processes"]) == (devices, processes)
        shares = split_sequences(seqs, processes)
        assert summary["sequences_by_process"] == {str(i): share for i, share in enumerate(shares)}
        assert "metrics" in summary
    assert all(len(share) >= 2 for share in split_sequences(seqs, 2))  # both processes had work
    assert "process 1/2 tracks" in logs[1] and "on 2 device(s)" in logs[1]

    # resume: only the sequence whose result file is gone is tracked again, with the same boxes
    (multi / "c.txt").unlink()
    done = []
    summary = run_evaluate(_config(), checkpoint=str(model_dir), dataset=f"folder:{benchmark}", workdir=multi,
                           threshold=0.0, on_sequence_done=done.append)
    assert done == ["c"] and summary["tracked"] == 1
    assert _result_bytes(multi) == want
