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
    """The training column's measurement, on a micro model (the tiny model's train step takes
    minutes to compile on 2 cores)."""
    import jax.numpy as jnp

    from grm_jax.model import GRM, ModelConfig

    speed = _speed_module()
    micro = ModelConfig(embed_dim=64, depth=2, num_heads=2, head_channels=16, divide_layers=(1,),
                        template_size=32, search_size=64)
    pairs_s, compile_s = speed.train_pairs_per_s(GRM(micro), jnp.float32, batch=2, steps=1)
    assert pairs_s > 0 and compile_s > 0
