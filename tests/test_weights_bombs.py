"""Resource attacks and malformed records in weights files (issue 17.1, 18.6, 18.8).

Each hostile file is built here (tests/hostile_weights.py, no torch). Cases that would exhaust
memory or hang on a careless reader run in a child process under an address-space cap
(RLIMIT_AS) and a timeout: the battery converts the legitimate tiny checkpoint first, caps the
child's address space at its peak + 2 x the model + 512 MiB, then runs every bomb through the
CLI's ``main`` and converts the legitimate file again under the cap.
"""
import collections
import json
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import hostile_weights as hw
from convert_weights import CheckpointError, load_state_dict
from convert_weights.torch_state import read_checkpoint
from torch_files import Storage, Tensor, write_legacy, write_zip
from conftest import timeout_s
from train_utils import REPO, subprocess_env

QKV = "backbone.blocks.0.attn.qkv.weight"


def _with(tensor, key=QKV):
    state = hw.grm_state()
    state[key] = tensor
    return {"net": state}


# In-process cases (none of them can exhaust memory or hang) ---------------------------------------
def test_shared_tensor_is_read_once(tmp_path):
    """The issue's memo bomb, read through the generic reader: 5000 keys, one 4 MB array."""
    path = hw.memo_bomb(tmp_path / "memo.pth")
    tracemalloc.start()
    try:
        state = load_state_dict(path, "net")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    extra = [state[f"backbone.blocks.0.extra{i}"] for i in range(5000)]
    assert all(a is extra[0] for a in extra) and extra[0].shape == (1 << 20,)
    assert peak < 32 << 20, peak  # one copy of the tensor (+ its storage while building), not 5000


@pytest.mark.parametrize("builder, message", [
    (hw.deep_key, "nested too deeply"),
    (hw.deep_value, "entry 'net' is a list, not a state dict"),
])
def test_deep_nesting_is_one_error(tmp_path, builder, message):
    path = builder(tmp_path / "deep.pth")
    with pytest.raises(CheckpointError, match=message) as info:
        load_state_dict(path, "net")
    assert str(info.value).startswith(str(path))


def test_deep_nesting_in_a_generic_read_is_refused(tmp_path):
    path = hw.raw_zip(tmp_path / "deep.pth", hw.PROTO + b"]" * 500 + b"a" * 499 + hw.STOP)
    with pytest.raises(CheckpointError, match="nested more than 100 levels deep"):
        read_checkpoint(path)


def test_cyclic_pickle_is_refused(tmp_path):
    pkl = hw.PROTO + b"]q\x00h\x00a" + hw.STOP  # a list that contains itself
    with pytest.raises(CheckpointError, match="contains itself"):
        read_checkpoint(hw.raw_zip(tmp_path / "cycle.pth", pkl))


def test_non_string_keys_are_refused(tmp_path):
    state = collections.OrderedDict([("a", np.ones(2, np.float32)), (7, np.ones(3, np.float32))])
    path = write_zip(tmp_path / "intkey.pth", {"net": state})
    with pytest.raises(CheckpointError, match=r"intkey\.pth: state dict key 7 is a int, not a string"):
        load_state_dict(path, "net")


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "archive/data/../data.pkl", "dup"])
def test_zip_entry_names(tmp_path, name):
    path = tmp_path / "names.pth"
    write_zip(path, {"net": {"a": np.ones(2, np.float32)}})
    with zipfile.ZipFile(path, "a") as z, pytest.warns(UserWarning) if name == "dup" else _nothing():
        z.writestr("archive/byteorder" if name == "dup" else name, b"little")
    expected = "appears twice" if name == "dup" else "is not a plain relative path"
    with pytest.raises(CheckpointError, match=expected) as info:
        load_state_dict(path, "net")
    assert str(path) in str(info.value)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


BAD_STRIDES = {
    "stride_2**62": Tensor(Storage(np.ones(4, np.float32)), 0, (1, 4), (2 ** 62, 1)),
    "stride_2**63": Tensor(Storage(np.ones(4, np.float32)), 0, (1, 4), (2 ** 63, 1)),
    "stride_-2**63": Tensor(Storage(np.ones(4, np.float32)), 3, (4,), (-(2 ** 63),)),
    "size_2**64": Tensor(Storage(np.ones(4, np.float32)), 0, (2 ** 64, 0), (1, 1)),
    "offset_2**70": Tensor(Storage(np.ones(4, np.float32)), 2 ** 70, (1,), (1,)),
    "ndim_100": Tensor(Storage(np.ones(4, np.float32)), 0, (1,) * 100, (1,) * 100),
}


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("case", sorted(BAD_STRIDES))
def test_overflowing_layouts_are_refused(tmp_path, fmt, case):
    writer = write_zip if fmt == "zip" else write_legacy
    path = writer(tmp_path / "ovf.pth", _with(BAD_STRIDES[case]))
    with pytest.raises(CheckpointError, match="out of range|negative|malformed") as info:
        load_state_dict(path, "net")
    assert QKV in str(info.value)


def test_huge_claimed_storage_in_small_file(tmp_path):
    claim = Tensor(Storage(np.ones(4, np.float32), declared_numel=2 ** 40), 0, (4,), (1,))
    for writer in (write_zip, write_legacy):
        path = writer(tmp_path / f"claim_{writer.__name__}.pth", {"net": {"a": claim}})
        with pytest.raises(CheckpointError, match=r"\(1099511627776 in their storages\), more than the 536870912 that a checkpoint read without a model|declared as FloatStorage of 1099511627776"):
            load_state_dict(path, "net")


def test_storage_dtype_mismatches(tmp_path):
    one = Storage(np.ones(6, np.float32))
    twice = {"a": Tensor(one, 0, (6,), (1,)), "b": Tensor(Storage(np.ones(6, np.float32), "HalfStorage"), 0, (6,), (1,))}
    pkl = hw.PROTO + hw.p_dict([(hw.p_str("net"), hw.p_dict([
        (hw.p_str("a"), hw.p_tensor("0", 6, (6,), (1,))),
        (hw.p_str("b"), hw.p_tensor("0", 6, (6,), (1,), stype="HalfStorage"))]))]) + hw.STOP
    path = hw.raw_zip(tmp_path / "twice.pth", pkl, {"0": np.ones(6, np.float32).tobytes()})
    with pytest.raises(CheckpointError, match="storage '0' is declared twice, as FloatStorage.6. and HalfStorage.6."):
        load_state_dict(path, "net")
    del twice
    odd = hw.raw_zip(tmp_path / "odd.pth", hw.PROTO + hw.p_dict([(hw.p_str("net"), hw.p_dict([
        (hw.p_str("a"), hw.p_tensor("0", 6, (6,), (1,)))]))]) + hw.STOP, {"0": b"\0" * 23})
    with pytest.raises(CheckpointError, match="holds 23 bytes but is declared as FloatStorage of 6 elements"):
        load_state_dict(odd, "net")


def test_integer_weights_are_refused_naming_the_key(tmp_path):
    from convert_weights import convert_grm_checkpoint

    state = hw.grm_state()
    state[QKV] = state[QKV].astype(np.int32)
    path = write_zip(tmp_path / "ints.pth", {"net": state})
    with pytest.raises(CheckpointError, match=rf"ints\.pth: tensor '{QKV}' has dtype int32; a weight must be floating"):
        convert_grm_checkpoint(path)


def test_npz_damage_is_one_clear_error(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, **hw.grm_state())
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside some member's data: a CRC error when it is read
    flipped = tmp_path / "flipped.npz"
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped\.npz: damaged \.npz state dict \(BadZipFile"):
        load_state_dict(flipped)
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"noise\.npz: not a \.npz archive") as info:
        load_state_dict(noise)
    assert "allow_pickle" not in info.value.user_message()


# Child-process battery under an address-space cap ------------------------------------------------
BATTERY = r"""
import contextlib, io, json, os, resource, sys
sys.path.insert(0, {tests!r})
from convert_weights.__main__ import main
from convert_weights.torch_state import load_state_dict, read_checkpoint

def vm(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) << 10

def run(name, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except BaseException as exc:  # a crash: report it, do not die
            rc = f"{{type(exc).__name__}}: {{exc}}"[:300]
    print(json.dumps({{"case": name, "rc": rc, "stderr": err.getvalue()}}), flush=True)

cases = json.loads(sys.argv[1])
run("legit_uncapped", ["grm", cases["legit"], cases["out"] + "/legit0"])
cap = vm("VmPeak") + 2 * os.path.getsize(cases["legit"]) + (512 << 20)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
print(json.dumps({{"case": "cap", "cap": cap}}), flush=True)
for name, path in cases["bombs"].items():
    run(name, ["grm", path, cases["out"] + "/" + name])
laughs = read_checkpoint(cases["laughs"])["net"]["laughs"]
depth = 0
while isinstance(laughs, list):
    assert laughs[0] is laughs[1]
    laughs, depth = laughs[0], depth + 1
print(json.dumps({{"case": "laughs_generic", "depth": depth}}), flush=True)
try:
    load_state_dict(cases["ratio"])
    print(json.dumps({{"case": "ratio_generic", "error": None}}), flush=True)
except Exception as exc:
    print(json.dumps({{"case": "ratio_generic", "error": str(exc)}}), flush=True)
run("legit_capped", ["grm", cases["legit"], cases["out"] + "/legit1"])
"""

# bomb -> what the one error line must say (after "error: <file>: ").
BOMB_MESSAGES = {
    "memo_bomb": "unexpected keys ['backbone.blocks.0.extra0'",
    "laughs": "missing key 'backbone.patch_embed.proj.weight'",
    "memo_index": "no 'net' entry",
    "deflate": "(1003012411 in their storages), more than the 3061563 that the model they describe needs",
    "deep_key": "nested too deeply",
    "deep_value": "entry 'net' is a list",
    "huge_view": "hold 3999547 elements (3999547 in their storages), more than the 3061563 that the model",
}


def _bombs(tmp_path):
    big = hw.grm_state()  # a 4 MB storage under a key the model has, with a bigger shape
    big["backbone.blocks.1.attn.qkv.weight"] = np.ones((1024, 1024), np.float32)
    return {
        "memo_bomb": hw.memo_bomb(tmp_path / "memo_bomb.pth"),
        "laughs": hw.billion_laughs(tmp_path / "laughs.pth"),
        "memo_index": hw.memo_index_bomb(tmp_path / "memo_index.pth"),
        "deflate": hw.deflate_bomb(tmp_path / "deflate.pth"),
        "deep_key": hw.deep_key(tmp_path / "deep_key.pth"),
        "deep_value": hw.deep_value(tmp_path / "deep_value.pth"),
        "huge_view": write_zip(tmp_path / "huge_view.pth", {"net": big}),
    }


def test_bombs_under_an_address_space_cap(tmp_path):
    legit = write_zip(tmp_path / "legit.pth", {"net": hw.grm_state()})
    ratio = hw.deflated(tmp_path / "ratio.pth", {"a": Tensor(Storage(np.zeros(4, np.float32),
                                                                     declared_numel=400_000_000), 0, (4,), (1,))},
                        {"0": 400_000_000})
    cases = {"legit": legit, "out": str(tmp_path), "bombs": _bombs(tmp_path), "laughs": hw.billion_laughs(
        tmp_path / "laughs_generic.pth"), "ratio": ratio}
    script = BATTERY.format(tests=str(REPO / "tests"))
    env = subprocess_env()
    env["MALLOC_ARENA_MAX"] = "2"
    run = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout_s(600), env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = {r["case"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert results["legit_uncapped"]["rc"] == 0 and results["legit_capped"]["rc"] == 0, results
    for name, message in BOMB_MESSAGES.items():
        r = results[name]
        errors = [line for line in r["stderr"].splitlines() if line.startswith("error:")]
        assert r["rc"] == 2 and "Traceback" not in r["stderr"], (name, r)
        assert len(errors) == 1 and errors[0].startswith(f"error: {cases['bombs'][name]}: "), (name, r)
        assert message in errors[0], (name, errors[0])
        assert not (tmp_path / name).exists(), name  # nothing written
    assert results["laughs_generic"]["depth"] == 40
    assert "(ratio over 16); refusing a decompression bomb" in results["ratio_generic"]["error"]
