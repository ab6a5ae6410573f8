"""``python -m grm_jax.export``: the jax.export artifact of the tracking step equals the live step.

Tiny fixture model, real tracker crops of the track_tiny video, thresholds 0 and 0.4.
"""
import json
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import timeout_s
from export_utils import THRESHOLDS, live_outputs, make_model_dir, tracker_crops
from grm_jax import load_model
from grm_jax.errors import ConfigError
from grm_jax.export import load_exported
from grm_jax.export.__main__ import main as export_main
from grm_jax.export.build import load_step_spec
from grm_jax.export.onnx import export_onnx
from grm_jax.track.tracker import run_step

BATCH = 3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("export_model") / "grm_tiny")


@pytest.fixture(scope="module")
def crops(model_dir):
    return tracker_crops(model_dir, BATCH)


@pytest.fixture(scope="module")
def exported_dir(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "grm_tiny_jax"
    assert export_main([str(model_dir), str(out), "--batch", str(BATCH)]) == 0
    return out


@pytest.mark.slow
def test_exported_step_equals_the_live_step(exported_dir, model_dir, crops):
    step = load_exported(exported_dir)
    for thr in THRESHOLDS:
        box_px, decisions, score_map = (np.asarray(a) for a in step(*crops, threshold=thr))
        ref_box, ref_dec, ref_score = live_outputs(model_dir, *crops, thr)
        np.testing.assert_array_equal(box_px, ref_box)
        np.testing.assert_array_equal(decisions, ref_dec)
        np.testing.assert_array_equal(score_map, ref_score)
        assert decisions.shape == (BATCH, 3, 256) and score_map.shape == (BATCH, 16, 16, 1)
        assert 0.05 < decisions.mean() < 0.95  # both token groups occur: the decisions are exercised


def _run_python(script: str, cwd, nominal_timeout: float) -> subprocess.CompletedProcess:
    """``python -c script`` in ``cwd``; asserts it exits 0 (showing the end of its stderr)."""
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout_s(nominal_timeout))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_metadata_describes_inputs_outputs_and_crops(exported_dir, model_dir):
    meta = json.loads((exported_dir / "export.json").read_text())
    assert meta["kind"] == "jax" and meta["platforms"] == ["cpu"] and meta["dtype"] == "float32"
    assert [(i["name"], i["shape"], i["dtype"]) for i in meta["inputs"]] == [
        ("template", [BATCH, 128, 128, 3], "uint8"), ("search", [BATCH, 256, 256, 3], "uint8"),
        ("resize_factor", [BATCH], "float32"), ("threshold", [], "float32")]
    assert [(o["name"], o["dtype"]) for o in meta["outputs"]] == [
        ("box_px", "float32"), ("decisions", "bool"), ("score_map", "float32")]
    assert meta["track"] == {"template_factor": 2.0, "template_size": 128, "search_factor": 4.0, "search_size": 256,
                             "clip_margin": 10, "matmul_precision": "highest"}
    assert meta["model_config"]["embed_dim"] == 192 and meta["divide_layers"] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_loader_runs_without_the_model_code(exported_dir, crops, tmp_path):
    """loader.py copied alone next to the export, in a process that never imports grm_jax."""
    import grm_jax.export.loader as loader

    shutil.copy(loader.__file__, tmp_path / "standalone_loader.py")
    np.savez(tmp_path / "crops.npz", *crops)
    script = (
        "import json, sys, numpy as np\n"
        "import standalone_loader\n"
        "c = np.load('crops.npz')\n"
        f"step = standalone_loader.load_exported({str(exported_dir)!r})\n"
        "box, dec, score = step(c['arr_0'], c['arr_1'], c['arr_2'], 0.4)\n"
        "assert not [m for m in sys.modules if m.startswith(('grm_jax', 'flax'))], 'model code imported'\n"
        "print(json.dumps(np.asarray(box).tolist()))\n")
    proc = _run_python(script, tmp_path, 300)
    in_process = np.asarray(load_exported(exported_dir)(*crops, threshold=0.4)[0])
    np.testing.assert_array_equal(np.asarray(json.loads(proc.stdout), np.float32), in_process)


@pytest.mark.slow
def test_bfloat16_multi_platform_export_equals_the_live_bfloat16_step(model_dir, crops, tmp_path):
    out = tmp_path / "bf16"
    assert export_main([str(model_dir), str(out), "--batch", str(BATCH), "--dtype", "bfloat16",
                        "--platforms", "cpu,cuda,tpu"]) == 0
    step = load_exported(out)
    assert tuple(step.exported.platforms) == ("cpu", "cuda", "tpu")
    assert step.metadata["dtype"] == "bfloat16"
    model, variables = load_model(model_dir)
    box_px, decisions, _ = step.call(variables, *crops, threshold=0.0)  # the tracker's device-call inputs
    ref_box, ref_dec = run_step(model.config, jnp.bfloat16, "highest", variables, *crops, 0.0)
    np.testing.assert_array_equal(np.asarray(box_px), np.asarray(ref_box))
    np.testing.assert_array_equal(np.asarray(decisions), np.asarray(ref_dec))


def test_bad_input_is_one_line(model_dir, tmp_path, capsys):
    assert export_main([str(model_dir), str(tmp_path / "x"), "--platforms", "cpu,npu"]) == 2
    assert "unknown platform 'npu'" in capsys.readouterr().err
    assert export_main([str(tmp_path / "missing"), str(tmp_path / "y")]) == 2
    assert "missing" in capsys.readouterr().err
    assert export_main([str(model_dir), str(tmp_path / "z"), "--batch", "0"]) == 2
    assert "--batch=0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
    with pytest.raises(FileNotFoundError, match="export.json: missing"):
        load_exported(tmp_path)


def test_onnx_export_names_the_missing_extra(model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # as in an environment without the [onnx] extra
    with pytest.raises(ConfigError, match="needs the 'jax2onnx' package") as info:
        export_onnx(load_step_spec(model_dir), "unused")
    assert '".[onnx]"' in info.value.hint


def test_loader_names_flatbuffers_when_it_is_missing(exported_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "flatbuffers", None)  # as where only jax and numpy are installed
    with pytest.raises(ImportError, match="needs the 'flatbuffers' package besides jax and numpy: pip install"):
        load_exported(exported_dir)


FAKE_ORT = '''
import numpy as np
class SessionOptions:
    log_severity_level = 0
class _Node:
    def __init__(self, name):
        self.name = name
class InferenceSession:
    def __init__(self, path, options, providers):
        self.path, self.providers = path, providers
    def get_inputs(self):
        return [_Node(n) for n in ("template", "search", "resize_factor", "threshold")]
    def get_outputs(self):
        return [_Node(n) for n in ("box_px", "decisions", "score_map")]
    def run(self, names, feeds):
        return [np.asarray([[f"{k}:{v.dtype}:{v.shape}" for k, v in feeds.items()]]), np.asarray(names),
                np.asarray(self.providers)]
'''


def test_onnx_loader_runs_with_onnxruntime_and_numpy_alone(tmp_path):
    """onnx_loader.py copied alone, in a process where grm_jax and jax cannot be imported; a stand-in
    onnxruntime records what it is fed (tests/test_onnx.py runs the real onnxruntime)."""
    import grm_jax.export.onnx_loader as onnx_loader

    shutil.copy(onnx_loader.__file__, tmp_path / "onnx_loader.py")
    (tmp_path / "onnxruntime.py").write_text(FAKE_ORT)
    export = tmp_path / "exp"
    export.mkdir()
    (export / "export.json").write_text(json.dumps({"kind": "onnx"}))
    (export / "step.onnx").write_bytes(b"graph")
    script = (
        "import json, sys\n"
        "sys.modules.update({'grm_jax': None, 'jax': None, 'flax': None})\n"
        "import numpy as np\n"
        "from onnx_loader import load_onnx\n"
        "step = load_onnx('exp', providers=('CUDAExecutionProvider', 'CPUExecutionProvider'))\n"
        "feeds, names, providers = step(np.zeros((2, 8, 8, 3)), np.zeros((2, 16, 16, 3)), [1.5, 2.0], 0.4)\n"
        "print(json.dumps([feeds.tolist(), names.tolist(), providers.tolist()]))\n")
    proc = _run_python(script, tmp_path, 120)
    feeds, names, providers = json.loads(proc.stdout)
    assert feeds == [["template:uint8:(2, 8, 8, 3)", "search:uint8:(2, 16, 16, 3)", "resize_factor:float32:(2,)",
                      "threshold:float32:()"]]
    assert names == ["box_px", "decisions", "score_map"] and providers == ["CUDAExecutionProvider",
                                                                           "CPUExecutionProvider"]
    (export / "export.json").write_text(json.dumps({"kind": "jax"}))
    with pytest.raises(ValueError, match="holds a 'jax' export, not 'onnx'"):
        onnx_loader.load_onnx(export)
