"""Smoke test of benchmarks/speed.py: the tiny model with minimal repeats produces the table and the
JSON (speeds are printed, never asserted)."""
import importlib.util
import json
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _speed_module():
    spec = importlib.util.spec_from_file_location("grm_speed_benchmark", REPO / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_speed_smoke(tmp_path, capsys, real_sequences):
    speed = _speed_module()
    out_json = tmp_path / "speed.json"
    out = speed.main(["--model", "tiny", "--attentions", "masked", "--repeats", "1", "--frames", "3",
                      "--batches", "1,2", "--batch_frames", "2", "--train_batch", "0",
                      "--changes", "--breakdown", "--json", str(out_json), "--sequences", str(real_sequences)])
    text = capsys.readouterr().out
    assert "| device | dtype | attention | batch | fwd ms med | fwd ms p90 |" in text
    assert "B=2 f/s" in text and "train pairs/s" in text and "Breakdown B=1" in text and "Breakdown B=2" in text
    assert "prefetch=2 vs prefetch=0" in text and "lanes=2 vs lanes=1" in text
    saved = json.loads(out_json.read_text())
    assert saved["meta"]["model"] == "tiny" and len(saved["rows"]) == 1 == len(out["rows"])
    masked = next(r for r in saved["rows"] if r["attention"] == "masked")
    for key in ("forward_ms_median", "forward_ms_p90", "track_fps_decode", "track_fps_decoded", "batched_fps_B1",
                "batched_fps_B2", "all_devices_fps", "compile_s"):
        assert masked[key] is not None and masked[key] >= 0, key
    assert masked["train_pairs_s"] is None  # --train_batch 0 (see test_train_column)
    stages = saved["breakdown"]["B=1"]
    assert {"decode", "crop", "transfer", "device", "map_back", "write"} <= set(stages)


@pytest.mark.slow
def test_train_column():
    """The training column's measurement, on the tests' micro model (the tiny model's train step
    takes minutes to compile on 2 cores)."""
    import jax.numpy as jnp

    from grm_jax.model import GRM
    from models import MICRO

    speed = _speed_module()
    pairs_s, compile_s = speed.train_pairs_per_s(GRM(MICRO), jnp.float32, batch=2, steps=1)
    assert pairs_s > 0 and compile_s > 0


@pytest.mark.slow
def test_roofline_smoke(tmp_path, capsys):
    """speed.py --roofline on the micro model: forward and train rows with XLA FLOPs, a measured GEMM
    peak and the fraction of it (values printed, never asserted beyond being sane)."""
    speed = _speed_module()
    out_json = tmp_path / "roof.json"
    out = speed.main(["--roofline", "--model", "micro", "--batches", "2", "--repeats", "1", "--square", "128",
                      "--json", str(out_json)])
    text = capsys.readouterr().out
    assert "| step | dtype | batch | ms (median) | pairs/s | GFLOP (XLA) | GFLOP/s | peak GFLOP/s | of peak |" in text
    assert "GEMM probes (GFLOP/s): float32 square" in text
    saved = json.loads(out_json.read_text())
    assert saved["meta"]["cpu_flags"] in ("AVX-512", "AVX2", "?") and len(saved["meta"]["load_average"]) == 3
    rows = {r["step"]: r for r in saved["rows"]}
    assert set(rows) == {"forward", "train"} and len(out["rows"]) == 2
    for r in rows.values():
        assert r["batch"] == 2 and r["ms_median"] > 0 and r["pairs_s"] > 0 and r["peak_gflop_s"] > 0
        assert r["fraction"] == pytest.approx(r["gflop_s"] / r["peak_gflop_s"])
    # the train step (forward + backward + update) costs about 3x the forward; the cost analysis sees it
    assert 2.0 < rows["train"]["gflop"] / rows["forward"]["gflop"] < 4.5


def _bench(name):
    spec = importlib.util.spec_from_file_location(f"grm_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pipeline_speed_smoke(tmp_path, capsys):
    """The input-pipeline benchmark on a generated GOT-10k-layout set of 1280x720 JPEGs: every stage of
    the breakdown is timed and the grain pipeline (in-process) delivers batches."""
    bench = _bench("pipeline_speed")
    out = bench.main(["--sequences", "1", "--frames", "20", "--breakdown_pairs", "4", "--batch", "2",
                      "--batches", "1", "--warmup", "1", "--workers", "0", "--modes", "exact,reduced",
                      "--json", str(tmp_path / "p.json")])
    text = capsys.readouterr().out
    assert "| mode | decode | crop | augmentation | heatmap | sampling/other | batching |" in text
    assert "| grain workers | pairs/s exact | pairs/s reduced |" in text
    for mode in ("exact", "reduced"):  # reduced: frames decoded inside the processing, counted as decode
        stages = out["modes"][mode]["stages_ms_per_pair"]
        assert all(stages[k] >= 0 for k in bench.STAGES) and stages["decode"] > 0 and stages["crop"] > 0
        assert out["modes"][mode]["pairs_s"]["0"] > 0
    assert out["stages_ms_per_pair"] == out["modes"]["exact"]["stages_ms_per_pair"]
    assert json.loads((tmp_path / "p.json").read_text())["batch"] == 2


def test_decode_ab_smoke(capsys, real_sequences):
    """The decode A/B benchmark on truck2 (boxes x1 and x8): decoders timed, the pipeline at a git
    revision (here HEAD) equal to now bit for bit, the reduced decoding's effect measured."""
    bench = _bench("decode_ab")
    out = bench.main(["--frames_from", str(real_sequences / "truck2"), "--box_scales", "1,8", "--sequences", "1",
                      "--frames", "25", "--decode_frames", "2", "--rounds", "1", "--pairs", "2", "--check_pairs", "2",
                      "--effect_pairs", "3", "--before", "HEAD"])
    text = capsys.readouterr().out
    assert "| read + checks + imdecode RGB (now) |" in text and "| now, data.reduced_decode |" in text
    small, large = out["scales"]
    assert small["before_equals_now"] and large["before_equals_now"]
    assert set(small["reduced_effect"]["decodes at 1/k"]) == {"1"}  # truck2's small boxes: exact crops
    assert small["reduced_effect"]["search MAE"] == 0
    assert set(large["reduced_effect"]["decodes at 1/k"]) - {"1"} and large["reduced_effect"]["search MAE"] > 0


def test_got10k_layout_is_read_by_the_training_reader(tmp_path):
    import cv2

    from grm_jax.datasets.loaders import training_source

    bench = _bench("pipeline_speed")
    root = bench.make_got10k_layout(tmp_path, sequences=2, frames=3)
    src = training_source("got10k_train_all", str(root))
    frame = src.load_frame(0, 2)
    assert frame.shape == (720, 1280, 3)
    assert (root / "train" / "GOT-10k_Train_000002" / "00000003.jpg").is_file()
    assert cv2.imread(str(root / "train" / "GOT-10k_Train_000001" / "00000001.jpg")).shape == (720, 1280, 3)


# torch is the optional [convert] extra (CI's venv has none): the stand-in's test exists where torch is
# installed, as tests/torch_files.py builds with torch only there.
if importlib.util.find_spec("torch") is not None:
    @pytest.mark.slow
    def test_torch_step_smoke(capsys):
        """benchmarks/torch_step.py on the micro model: the PyTorch stand-in has exactly the parameter
        count of the jax network it is timed against (same layers and shapes), and both rows are timed."""
        bench = _bench("torch_step")
        out = bench.main(["--model", "micro", "--batch", "2", "--repeats", "1"])
        text = capsys.readouterr().out
        assert "| train step | ms (median) | x PyTorch |" in text
        assert out["params"]["torch"] == out["params"]["jax"]
        assert set(out["rows"]) == {"pytorch eager (stand-in)", "grm-jax"}
        assert all(r["ms"] > 0 and r["cpu_ms"] > 0 for r in out["rows"].values())


@pytest.mark.real_data
def test_input_stall_feeds_the_real_network_from_real_frames(tmp_path, real_sequences):
    """input_stall.py --model vit_b --frames_from DIR: the run trains ViT-B at the given batch on a
    GOT-10k layout of DIR's JPEGs, and its pipeline yields batches of the network's crop sizes."""
    from data_pipelines.pipeline import make_train_iterator
    from grm_jax.run_config import RunConfig

    bench = _bench("input_stall")
    run = bench.real_frames_run(RunConfig(), "vit_b", 2, str(real_sequences / "truck2"), tmp_path)
    assert (run.model.embed_dim, run.model.depth, run.train.batch_size) == (768, 12, 2)
    assert run.data.datasets == ("got10k_train_all",) and run.data.roots["got10k"] == str(tmp_path)
    batch = next(iter(make_train_iterator(run, 2, seed=0, num_workers=0, num_threads=1)))
    assert batch["template"].shape == (2, 128, 128, 3) and batch["search"].shape == (2, 256, 256, 3)


@pytest.mark.slow
def test_host_memory_ab_smoke(tmp_path, capsys):
    """benchmarks/host_memory_ab.py on the micro model: one process per variant, the setting applied
    only in the 'on' one, and its steps reuse freed memory (no page faults)."""
    bench = _bench("host_memory_ab")
    out = bench.main(["--model", "micro", "--rounds", "1", "--steps", "2", "--json", str(tmp_path / "h.json")])
    text = capsys.readouterr().out
    assert "| keep_freed_memory | ms per step | user CPU ms | system CPU ms | minor faults per step |" in text
    (off,), (on,) = out["runs"]["off"], out["runs"]["on"]
    assert off["applied"] is False and on["applied"] is True
    assert on["faults"] <= off["faults"] and on["ms"] > 0 and off["ms"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("step", ["train", "forward"])
def test_profile_step_smoke(tmp_path, capsys, step):
    """profile_step.py on the micro model: the trace's events summed per op kind, for the train step
    and for the forward; the optimized HLO written on request."""
    hlo = tmp_path / "step.hlo"
    _bench("profile_step").main(["--model", "micro", "--step", step, "--steps", "1", "--top", "5", "--hlo", str(hlo)])
    text = capsys.readouterr().out
    assert "| op kind | ms per step | calls per step | share |" in text and "ms of events per step" in text
    assert "HloModule" in hlo.read_text()
