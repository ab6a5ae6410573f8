"""Checkpoint security: no code from a .pth file ever runs; tensors are checked against storages.

Every malicious file carries a harmless payload (``touch <marker>`` through ``posix.system``,
or ``exec`` of code creating the marker); each test asserts the refusal message and that the
marker does NOT exist. Files are hand-built (no torch needed) and, when torch is installed,
also written by torch itself (``tests/torch_files.py``).
"""
import argparse
import collections
import subprocess
import sys

import numpy as np
import pytest

import convert_weights
import grm_jax.errors
from conftest import FIXTURES, timeout_s
from convert_weights import CheckpointError, convert_grm_checkpoint, convert_mae_checkpoint, load_state_dict
from convert_weights import torch_state
from grm_jax.configuration import load_run_config
from torch_files import BUILDERS, Payload, Storage, Tensor, write, write_legacy, write_zip
from train_utils import REPO, subprocess_env

GRM_NPZ = FIXTURES / "grm_tiny" / "state_dict.npz"
MAE_PTH = FIXTURES / "mae_tiny" / "mae_pretrain_vit_tiny_random.pth"
FORMATS = ("zip", "legacy")
REFUSED = r"refusing to load: global 'posix\.system' is not allowed in a checkpoint"


def _grm_state():
    return collections.OrderedDict(np.load(GRM_NPZ))


def _tiny_config():
    return load_run_config(str(REPO / "configs" / "grm_tiny_cpu.py")).model


def _touch(marker):
    return Payload("posix", "system", (f"touch {marker}",))


def test_checkpoint_error_is_the_shared_class():
    assert torch_state.CheckpointError is grm_jax.errors.CheckpointError
    assert convert_weights.CheckpointError is grm_jax.errors.CheckpointError


# 1. Code execution through pickles --------------------------------------------------------
@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("place", ["in_state_dict", "top_level_entry", "root"])
def test_grm_payload_is_refused(tmp_path, builder, fmt, place):
    marker = tmp_path / "marker"
    state = _grm_state()
    if place == "in_state_dict":
        state["evil"] = _touch(marker)
        obj = {"net": state}
    elif place == "top_level_entry":
        obj = {"net": state, "settings": _touch(marker)}
    else:
        obj = _touch(marker)
    path = write(builder, fmt, tmp_path / f"evil_{fmt}.pth.tar", obj)
    with pytest.raises(CheckpointError, match=rf"evil_{fmt}\.pth\.tar: {REFUSED}"):
        convert_grm_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_mae_payload_is_refused(tmp_path, builder, fmt):
    marker = tmp_path / "marker"
    state = collections.OrderedDict(load_state_dict(MAE_PTH, "model"))
    state["norm.weight"] = Payload("builtins", "exec", (f"open({str(marker)!r}, 'w').close()",))
    # (torch writes pickle protocol 2, which names the module '__builtin__')
    path = write(builder, fmt, tmp_path / f"mae_{fmt}.pth", {"model": state})
    with pytest.raises(CheckpointError, match=r"refusing to load: global '(builtins|__builtin__)\.exec' is not allowed"):
        convert_mae_checkpoint(path, _tiny_config())
    assert not marker.exists()


@pytest.mark.multiprocess
def test_cli_refuses_payload_in_one_line(tmp_path):
    marker = tmp_path / "marker"
    state = _grm_state()
    state["evil"] = _touch(marker)
    path = write_legacy(tmp_path / "evil.pth", {"net": state})
    run = subprocess.run([sys.executable, "-m", "convert_weights", "grm", path, str(tmp_path / "out")],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout_s(120))
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert len(errors) == 1 and "evil.pth: refusing to load: global 'posix.system'" in errors[0], run.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.multiprocess
def test_training_mae_init_refuses_payload(tmp_path):
    """launch.py --config.init.mae=EVIL on a (2-sequence) GOT-10k-layout root: refused before training."""
    from grm_jax.datasets.sample_generator import ensure_sample_dataset

    marker = tmp_path / "marker"
    state = collections.OrderedDict(load_state_dict(MAE_PTH, "model"))
    state["cls_token"] = _touch(marker)
    path = write_legacy(tmp_path / "mae_evil.pth", {"model": state})
    got10k = ensure_sample_dataset(tmp_path / "got10k", num_train=2, num_val=1)
    cmd = [sys.executable, str(REPO / "launch.py"), "--config", str(REPO / "configs" / "grm_tiny_cpu.py"),
           "--workdir", str(tmp_path / "run"), "--config.data.datasets=got10k_train_all",
           "--config.data.ratios=1.0,", f"--config.data.roots.got10k={got10k}", f"--config.init.mae={path}",
           "--config.train.max_steps=1", "--config.train.batch_size=2"]
    run = subprocess.run(cmd, env=subprocess_env(), cwd=REPO, capture_output=True,
                         text=True, timeout=timeout_s(600))
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "mae_evil.pth: refusing to load: global 'posix.system'" in run.stderr, run.stderr[-3000:]
    assert not marker.exists()


# Legitimate files --------------------------------------------------------------------------
@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_legitimate_files_load_bit_identically(tmp_path, builder, fmt):
    state = _grm_state()
    # What an official training checkpoint holds next to 'net' (inert bookkeeping objects).
    settings = argparse.Namespace(device=Payload("torch", "device", ("cuda", 0)), lr=np.float64(1e-4))
    optimizer = {"state": {0: {"exp_avg": np.zeros(3, np.float32)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    path = write(builder, fmt, tmp_path / "GRM_ep0100.pth.tar",
                 {"net": state, "epoch": 100, "net_type": "GRM", "optimizer": optimizer, "settings": settings})
    loaded = load_state_dict(path, "net")
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value)
    _, from_file = convert_grm_checkpoint(path)
    _, from_npz = convert_grm_checkpoint(str(GRM_NPZ))
    np.testing.assert_array_equal(from_file["params"]["backbone"]["blocks_2"]["attn"]["qkv"]["kernel"],
                                  from_npz["params"]["backbone"]["blocks_2"]["attn"]["qkv"]["kernel"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_dtypes_and_shared_storages(tmp_path, fmt):
    base = Storage(np.arange(24, dtype=np.float32))
    bf16 = np.array([1.5, -2.25, 2.0 ** 100], np.float32)  # exact in bfloat16
    obj = {
        "t": Tensor(base, 0, (6, 4), (1, 6)),                       # transpose of a (4, 6) tensor
        "s": Tensor(base, 8, (2, 3), (6, 1)),                       # base[1:3, 2:5]
        "scalar": Tensor(base, 23, (), ()),
        "empty": Tensor(base, 24, (0, 3), (3, 1)),
        "bf": Tensor(Storage((bf16.view(np.uint32) >> 16).astype(np.uint16), "BFloat16Storage"), 0, (3,), (1,)),
        "h": np.array([1.5, -0.25], np.float16), "b": np.array([True, False]), "i": np.array([2 ** 40, -7]),
    }
    path = write_zip(tmp_path / "v.pth", obj) if fmt == "zip" else write_legacy(tmp_path / "v.pth", obj)
    got = load_state_dict(path)
    grid = np.arange(24, dtype=np.float32).reshape(4, 6)
    expected = {"t": grid.T, "s": grid[1:3, 2:5], "scalar": np.float32(23), "empty": np.zeros((0, 3), np.float32),
                "bf": bf16, "h": obj["h"], "b": obj["b"], "i": obj["i"]}
    for key, value in expected.items():
        assert got[key].dtype == np.asarray(value).dtype and got[key].shape == np.shape(value), key
        np.testing.assert_array_equal(got[key], value)


def test_truncated_files_are_clear_errors(tmp_path):
    pth = tmp_path / "half.pth.tar"
    data = (FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar").read_bytes()
    pth.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"half\.pth\.tar: truncated or corrupt zip checkpoint"):
        load_state_dict(pth, "net")
    legacy = write_legacy(tmp_path / "legacy.pth", {"net": _grm_state()})
    with open(legacy, "r+b") as f:
        f.truncate(len(open(legacy, "rb").read()) - 100)
    with pytest.raises(CheckpointError, match=r"legacy\.pth: truncated legacy checkpoint"):
        load_state_dict(legacy, "net")


# 2. Tensors checked against their storage ---------------------------------------------------
BAD_TENSORS = {
    "beyond_storage": (Tensor(Storage(np.ones(10, np.float32)), 0, (12,), (1,)), "needs 12 elements"),
    "offset_beyond": (Tensor(Storage(np.ones(10, np.float32)), 8, (4,), (1,)), "needs 12 elements"),
    "stride_beyond": (Tensor(Storage(np.ones(12, np.float32)), 0, (2, 3), (10, 1)), "needs 13 elements"),
    "negative_stride": (Tensor(Storage(np.ones(12, np.float32)), 11, (3,), (-1,)), "negative"),
    "negative_size": (Tensor(Storage(np.ones(12, np.float32)), 0, (-2,), (1,)), "negative"),
    "malformed_size": (Tensor(Storage(np.ones(12, np.float32)), 0, "12", (1,)), "malformed tensor record"),
    "declared_numel": (Tensor(Storage(np.ones(4, np.float32), declared_numel=4000), 0, (4,), (1,)),
                       "declared as FloatStorage of 4000"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_tensor_outside_its_storage_is_refused(tmp_path, fmt, case):
    tensor, message = BAD_TENSORS[case]
    state = _grm_state()
    state["backbone.blocks.0.attn.qkv.weight"] = tensor
    writer = write_zip if fmt == "zip" else write_legacy
    path = writer(tmp_path / f"{case}.pth", {"net": state})
    with pytest.raises(CheckpointError, match=f"{case}.pth") as info:
        load_state_dict(path, "net")
    assert message in str(info.value)
    if case != "declared_numel":  # a storage-level error names the storage, the others the tensor
        assert "backbone.blocks.0.attn.qkv.weight" in str(info.value)


def test_unknown_storage_type_is_refused(tmp_path):
    state = _grm_state()
    state["x"] = Tensor(Storage(np.ones(4, np.float32), "EvilStorage"), 0, (4,), (1,))
    with pytest.raises(CheckpointError, match=r"global 'torch\.EvilStorage' is not allowed"):
        load_state_dict(write_zip(tmp_path / "s.pth", {"net": state}), "net")


@pytest.mark.multiprocess
def test_cli_huge_claim_is_refused_not_crashed(tmp_path):
    state = _grm_state()
    state["backbone.pos_embed_x"] = Tensor(Storage(np.ones(16, np.float32)), 0, (1, 260_417, 192),
                                           (0, 192, 1))  # a 50M-element claim on 16 elements
    path = write_zip(tmp_path / "huge.pth.tar", {"net": state})
    run = subprocess.run([sys.executable, "-m", "convert_weights", "grm", path, str(tmp_path / "out")],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout_s(120))
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "huge.pth.tar: tensor 'backbone.pos_embed_x'" in run.stderr and "Traceback" not in run.stderr


# 4. Bad values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused(tmp_path, bad):
    state = dict(_grm_state())
    state["backbone.blocks.1.attn.qkv.weight"] = state["backbone.blocks.1.attn.qkv.weight"].copy()
    state["backbone.blocks.1.attn.qkv.weight"][3, 5] = bad
    np.savez(tmp_path / "grm.npz", **state)
    with pytest.raises(CheckpointError, match=r"grm\.npz: tensor 'backbone\.blocks\.1\.attn\.qkv\.weight' holds 1 NaN/Inf"):
        convert_grm_checkpoint(str(tmp_path / "grm.npz"))
    mae = dict(load_state_dict(MAE_PTH, "model"))
    mae["pos_embed"] = mae["pos_embed"].copy()
    mae["pos_embed"][0, 1, :2] = -bad
    np.savez(tmp_path / "mae.npz", **mae)
    with pytest.raises(CheckpointError, match=r"mae\.npz: tensor 'pos_embed' holds 2 NaN/Inf"):
        convert_mae_checkpoint(str(tmp_path / "mae.npz"), _tiny_config())


@pytest.mark.multiprocess
def test_num_heads_must_be_positive(tmp_path):
    with pytest.raises(CheckpointError, match="num_heads must be a positive integer, got -3"):
        convert_grm_checkpoint(str(GRM_NPZ), num_heads=-3)
    run = subprocess.run([sys.executable, "-m", "convert_weights", "grm", str(GRM_NPZ), str(tmp_path / "o"),
                          "--num-heads", "0"], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout_s(120))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.splitlines()[0] == "error: --num-heads must be a positive integer, got 0"


# 5. The CLI -------------------------------------------------------------------------------------
@pytest.mark.multiprocess
def test_cli_help_and_verbose(tmp_path):
    run = subprocess.run([sys.executable, "-m", "convert_weights", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout_s(120))
    assert run.returncode == 0, run.stderr
    for text in ("grm ", "mae ", "--num-heads", "--config", "--set", "--verbose",
                 "python -m convert_weights grm GRM_ep0100.pth.tar models/grm_got"):
        assert text in run.stdout, text
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02not a pickle")
    run = subprocess.run([sys.executable, "-m", "convert_weights", "grm", str(bad), str(tmp_path / "o"), "--verbose"],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout_s(120))
    assert run.returncode == 2 and "Traceback" in run.stderr and "error: " in run.stderr, run.stderr
