"""Tampered and damaged exports (issue 17.5, 18.2, 18.8): one clear error, and nothing runs.

* a step.jaxexport whose StableHLO calls ``custom_call @xla_ffi_python_cpu_callback`` (built
  here with jax's own exporter, its safety check disabled, as an attacker would): the loader
  refuses it naming the target, before anything runs (it used to die with SIGSEGV);
* truncated or random-bytes step.jaxexport / step.onnx: refused by the sha256 in export.json,
  before any parser sees them; without sums (older exports), a clear deserialization error;
* a flipped byte or random bytes in variables.npz: one error, never advice to allow pickles.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from export_utils import make_model_dir
from grm_jax.export import load_exported
from grm_jax.export.build import export_step, load_step_spec, step_avals
from grm_jax.export.loader import ExportError, check_custom_calls
from grm_jax.export.onnx_loader import load_onnx
from conftest import timeout_s
from train_utils import REPO, subprocess_env

CALLBACK = "xla_ffi_python_cpu_callback"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    spec = load_step_spec(make_model_dir(root / "model"))
    return export_step(spec, root / "export"), spec


def _copy(export_dir, tmp_path):
    return shutil.copytree(export_dir[0], tmp_path / "export")


def _resum(directory, *names):
    """Rewrites export.json's sums for ``names`` (as an attacker who rewrites the files would)."""
    meta = json.loads((directory / "export.json").read_text())
    for name in names:
        meta["sha256"][name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    (directory / "export.json").write_text(json.dumps(meta))


def _callback_export(spec, marker, monkeypatch):
    """The step's signature, but the body calls back into Python (which would touch ``marker``).
    jax refuses to serialize host callbacks; an attacker skips that check (a private function)."""
    from jax._src.export import _export

    monkeypatch.setattr(_export, "_check_lowering", lambda lowering: None)
    def step(variables, template_u8, search_u8, resize_factor, threshold):
        def touch(t):
            open(marker, "w").close()
            return t
        t = jax.pure_callback(touch, jax.ShapeDtypeStruct((), jnp.float32), threshold)
        return jnp.zeros((template_u8.shape[0], 4), jnp.float32) + t
    var_avals = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                                       spec.variables)
    exporter = jax.export.export(jax.jit(step), disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(CALLBACK)])
    return bytes(exporter(var_avals, *step_avals(spec)).serialize())


CHILD = r"""
import json, sys, numpy as np
from grm_jax.export import load_exported
try:
    step = load_exported(sys.argv[1])
    spec = step.metadata["inputs"]
    args = [np.zeros(i["shape"], i["dtype"]) for i in spec[:3]]
    step(*args, threshold=0.0)
    print(json.dumps({"error": None}))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""


def test_custom_call_outside_the_allow_list_never_runs(export_dir, tmp_path, monkeypatch):
    directory = _copy(export_dir, tmp_path)
    marker = tmp_path / "marker"
    (directory / "step.jaxexport").write_bytes(_callback_export(export_dir[1], marker, monkeypatch))
    _resum(directory, "step.jaxexport")
    run = subprocess.run([sys.executable, "-c", CHILD, str(directory)], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout_s(300), env=subprocess_env())
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])  # (it used to be -11, SIGSEGV)
    error = json.loads(run.stdout.splitlines()[-1])["error"]
    assert error == (f"ExportError: {directory / 'step.jaxexport'}: the module calls custom_call target "
                     f"'{CALLBACK}', which grm-jax's exporter never emits (code outside the module); refusing to "
                     "load it"), error
    assert not marker.exists()


@pytest.mark.parametrize("text, named", [
    ('%0 = stablehlo.custom_call @my_kernel(%arg0) : (tensor<3xf32>) -> tensor<3xf32>', "my_kernel"),
    ('%0 = stablehlo.custom_call @"odd name$1"(%arg0)', "odd name$1"),
    ('%0 = "stablehlo.custom_call"(%arg0) {call_target_name = "lapack_sgesdd"}', "lapack_sgesdd"),
    ('%0 = "stablehlo.send"(%arg0, %tok)', "stablehlo.send"),
    ('%0 = stablehlo.outfeed %arg0, %tok', "stablehlo.outfeed"),
])
def test_custom_call_forms_are_recognised(text, named):
    module = types.SimpleNamespace(mlir_module=lambda: "func.func @main() {\n  " + text + "\n}")
    with pytest.raises(ExportError, match="refusing to load it") as info:
        check_custom_calls(module, "x/step.jaxexport")
    assert repr(named) in str(info.value)


def test_our_own_multi_platform_export_passes_the_check(export_dir, tmp_path):
    out = export_step(export_dir[1], tmp_path / "multi", platforms=("cpu", "cuda", "tpu"))
    step = load_exported(out)  # checks custom calls; raises if the exporter emitted any target
    assert tuple(step.exported.platforms) == ("cpu", "cuda", "tpu")


@pytest.mark.parametrize("damage", ["truncated", "random"])
@pytest.mark.parametrize("with_sums", [True, False])
def test_damaged_step_file_is_one_error(export_dir, tmp_path, damage, with_sums):
    directory = _copy(export_dir, tmp_path)
    step = directory / "step.jaxexport"
    data = step.read_bytes()
    step.write_bytes(data[: len(data) // 2] if damage == "truncated" else np.random.default_rng(1).bytes(len(data)))
    if not with_sums:
        meta = json.loads((directory / "export.json").read_text())
        del meta["sha256"]
        (directory / "export.json").write_text(json.dumps(meta))
    message = "does not match its sha256 in export.json" if with_sums else "cannot deserialize"
    with pytest.raises(ExportError, match=message) as info:
        load_exported(directory)
    assert str(info.value).startswith(str(step)) and "\n" not in str(info.value)


def test_variables_npz_damage(export_dir, tmp_path):
    directory = _copy(export_dir, tmp_path)
    npz = directory / "variables.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"variables\.npz: does not match its sha256"):
        load_exported(directory)
    _resum(directory, "variables.npz")  # sums rewritten: the zip's own CRC still catches the flip
    with pytest.raises(ExportError, match=r"variables\.npz: damaged \(BadZipFile"):
        load_exported(directory)
    npz.write_bytes(np.random.default_rng(2).bytes(4096))
    _resum(directory, "variables.npz")
    with pytest.raises(ExportError, match=r"variables\.npz: not a \.npz archive") as info:
        load_exported(directory)
    assert "allow_pickle" not in str(info.value)


def _onnx_dir(tmp_path, graph: bytes, listed: bytes | None):
    directory = tmp_path / "onnx"
    directory.mkdir()
    (directory / "step.onnx").write_bytes(graph)
    meta = {"format": "grm-jax-export-1", "kind": "onnx"}
    if listed is not None:
        meta["sha256"] = {"step.onnx": hashlib.sha256(listed).hexdigest()}
    (directory / "export.json").write_text(json.dumps(meta))
    return directory


def test_damaged_onnx_is_refused_before_onnxruntime(tmp_path, monkeypatch):
    """step.onnx cut short (its sum listed): refused before onnxruntime is even imported."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # importing it would raise ImportError
    original = np.random.default_rng(3).bytes(2048)
    directory = _onnx_dir(tmp_path, original[:1000], original)
    with pytest.raises(ValueError, match=r"step\.onnx: does not match its sha256 in export\.json"):
        load_onnx(directory)


def test_random_onnx_without_sums_is_one_error(tmp_path, monkeypatch):
    """An older export (no sums) holding random bytes: onnxruntime's parse error becomes one line."""
    class Fail(Exception):
        pass

    def session(path, *args, **kwargs):
        raise Fail(f"[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from {path} failed:Protobuf parsing failed.")

    fake = types.SimpleNamespace(SessionOptions=lambda: types.SimpleNamespace(), InferenceSession=session)
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    directory = _onnx_dir(tmp_path, np.random.default_rng(4).bytes(2048), None)
    with pytest.raises(ValueError, match=r"step\.onnx: onnxruntime cannot load it \(Fail: .*INVALID_PROTOBUF"):
        load_onnx(directory)
