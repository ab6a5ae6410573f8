"""Converters: official GRM and MAE checkpoints, .npz input, CLI, and every bad-input error."""
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from conftest import FIXTURES, timeout_s
from convert_weights import (CheckpointError, convert_grm_checkpoint, convert_mae_checkpoint, infer_config,
                             load_state_dict, state_dict_to_variables)
from grm_jax import load_model
from helpers import variables_to_state_dict
from grm_jax.configuration import load_run_config

GRM_PTH = FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"
GRM_NPZ = FIXTURES / "grm_tiny" / "state_dict.npz"
MAE_PTH = FIXTURES / "mae_tiny" / "mae_pretrain_vit_tiny_random.pth"
REPO = FIXTURES.parents[1]


def test_zip_reader_equals_npz_without_torch():
    from_pth = load_state_dict(GRM_PTH, "net")
    from_npz = load_state_dict(GRM_NPZ)
    assert from_pth.keys() == from_npz.keys() and len(from_pth) == 164
    for k in from_npz:
        assert from_pth[k].dtype == from_npz[k].dtype
        np.testing.assert_array_equal(from_pth[k], from_npz[k])


def test_config_inferred_from_shapes():
    config, _ = convert_grm_checkpoint(str(GRM_PTH))
    assert (config.embed_dim, config.depth, config.num_heads) == (192, 4, 3)
    assert (config.template_size, config.search_size, config.head_channels) == (128, 256, 64)
    assert config.divide_layers == (1, 2, 3)
    config6, _ = convert_grm_checkpoint(str(GRM_NPZ), num_heads=6)
    assert config6.num_heads == 6


def test_round_trip_to_official_layout():
    state = load_state_dict(GRM_NPZ)
    config = infer_config(state)
    back = variables_to_state_dict(state_dict_to_variables(state, config), config)
    for k, v in back.items():
        np.testing.assert_array_equal(v, state[k])


@pytest.mark.slow
def test_mae_conversion_matches_official_finetune_track():
    config = load_run_config(str(REPO / "configs" / "grm_tiny_cpu.py")).model
    variables = convert_mae_checkpoint(str(MAE_PTH), config)
    expected = np.load(FIXTURES / "mae_tiny" / "expected.npz")
    bb = variables["params"]["backbone"]
    np.testing.assert_allclose(bb["pos_embed_z"], expected["pos_embed_z"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(bb["pos_embed_x"], expected["pos_embed_x"], rtol=0, atol=1e-5)
    state = load_state_dict(MAE_PTH, "model")
    np.testing.assert_array_equal(bb["blocks_2"]["attn"]["qkv"]["kernel"], state["blocks.2.attn.qkv.weight"].T)
    np.testing.assert_array_equal(bb["blocks_3"]["fc2"]["bias"], state["blocks.3.mlp.fc2.bias"])
    np.testing.assert_array_equal(bb["patch_embed"]["kernel"],
                                  state["patch_embed.proj.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(bb["norm"]["scale"], state["norm.weight"])
    # Predictors and head keep their own init: trunc-normal(0.02) linears with zero bias.
    fc0 = bb["blocks_1"]["attn"]["divide_predict"]["fc0"]
    assert 0.015 < float(np.std(fc0["kernel"])) < 0.025 and not np.any(fc0["bias"])
    missing = (FIXTURES / "mae_tiny" / "missing_keys.txt").read_text().split()
    assert len(missing) == 18  # exactly the divide_predict tensors are not in the MAE file


@pytest.mark.multiprocess
def test_cli_grm_and_load_model(tmp_path):
    dst = tmp_path / "grm_tiny"
    run = subprocess.run([sys.executable, "-m", "convert_weights", "grm", str(GRM_PTH), str(dst)],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout_s(120))
    assert run.returncode == 0, run.stderr
    model, variables = load_model(dst)
    _, reference = convert_grm_checkpoint(str(GRM_PTH))
    for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert model.config.divide_layers == (1, 2, 3)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_cli_mae(tmp_path):
    dst = tmp_path / "mae"
    run = subprocess.run([sys.executable, "-m", "convert_weights", "mae", str(MAE_PTH), str(dst),
                          "--config", "configs/grm_tiny_cpu.py"], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout_s(120))
    assert run.returncode == 0, run.stderr
    model, _ = load_model(dst)
    assert model.config.embed_dim == 192


@pytest.mark.multiprocess
def test_cli_reports_bad_input(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"definitely not a checkpoint")
    run = subprocess.run([sys.executable, "-m", "convert_weights", "grm", str(bad), str(tmp_path / "o")],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout_s(120))
    assert run.returncode == 2 and "bad.pth" in run.stderr and "Traceback" not in run.stderr


# Bad inputs -------------------------------------------------------------------------------
def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pth"):
        convert_grm_checkpoint(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        convert_grm_checkpoint(str(tmp_path / "absent.pth"))


def test_truncated_file(tmp_path):
    path = tmp_path / "truncated.pth.tar"
    data = GRM_PTH.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth.tar"):
        convert_grm_checkpoint(str(path))


def test_zip_with_missing_storage(tmp_path):
    path = tmp_path / "holey.pth.tar"
    with zipfile.ZipFile(GRM_PTH) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("/data/3"):
                dst.writestr(info, src.read(info.filename))
    with pytest.raises(CheckpointError, match="missing"):
        convert_grm_checkpoint(str(path))


def _state():
    return dict(load_state_dict(GRM_NPZ))


def _save(tmp_path, state, name="edited.npz"):
    path = tmp_path / name
    np.savez(path, **state)
    return str(path)


def test_missing_keys_are_listed(tmp_path):
    state = _state()
    del state["backbone.blocks.2.attn.proj.bias"], state["box_head.conv5_size.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \['backbone.blocks.2.attn.proj.bias', "
                                              r"'box_head.conv5_size.weight'\]"):
        convert_grm_checkpoint(_save(tmp_path, state))


def test_unexpected_keys_are_listed(tmp_path):
    state = _state()
    state["backbone.extra_token"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['backbone.extra_token'\]"):
        convert_grm_checkpoint(_save(tmp_path, state))


def test_shapes_that_do_not_form_a_grm(tmp_path):
    state = _state()
    state["backbone.blocks.1.attn.qkv.weight"] = state["backbone.blocks.1.attn.qkv.weight"][:-3]
    with pytest.raises(CheckpointError, match="backbone.blocks.1.attn.qkv.weight"):
        convert_grm_checkpoint(_save(tmp_path, state))
    state = _state()
    state["backbone.pos_embed_x"] = state["backbone.pos_embed_x"][:, :250]
    with pytest.raises(CheckpointError, match="not a square grid"):
        convert_grm_checkpoint(_save(tmp_path, state))


def test_heads_must_divide_dim():
    with pytest.raises(CheckpointError, match="num_heads=5 does not divide embed dim 192"):
        convert_grm_checkpoint(str(GRM_NPZ), num_heads=5)


@pytest.mark.slow
def test_mae_wrong_depth_or_dim():
    config = load_run_config(str(REPO / "configs" / "grm_tiny_cpu.py")).model
    with pytest.raises(CheckpointError, match="unexpected keys"):
        convert_mae_checkpoint(str(MAE_PTH), config.replace(depth=3))
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight"):
        convert_mae_checkpoint(str(MAE_PTH), config.replace(embed_dim=96, num_heads=3))


def test_mae_file_given_to_grm_converter():
    with pytest.raises(CheckpointError, match="no 'net' entry; top-level keys: \\['model'\\]"):
        convert_grm_checkpoint(str(MAE_PTH))


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        load_model(tmp_path / "empty")


def test_load_model_rejects_mismatched_config(tmp_path):
    from grm_jax.checkpoint import write_model_config

    config, variables = convert_grm_checkpoint(str(GRM_PTH))
    from grm_jax import save_model

    save_model(tmp_path / "m", config, variables)
    write_model_config(tmp_path / "m", config.replace(embed_dim=96))
    with pytest.raises(ValueError, match="model_config.json does not match its sha256"):
        load_model(tmp_path / "m")
    from grm_jax.checkpoint import _write_manifest

    _write_manifest(tmp_path / "m")  # a consistent manifest: the shape check still refuses it
    with pytest.raises(ValueError, match="do not match"):
        load_model(tmp_path / "m")
