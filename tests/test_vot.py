"""VOT toolkit integration (``python -m grm_jax.vot``, TraX) with the tiny fixture model.

The toolkit (the ``[vot]`` extra: vot-toolkit 0.9.0, attributee < 0.1.10) runs from its own cached
venv (tests/overlay_venv.py), as README recommends; our tracker runs under this interpreter, as
``trackers.ini`` points it there. Everything is offline: ``vot test`` generates its synthetic
sequence, and the workspace holds one generated sample sequence in VOT format.
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, timeout_s
from convert_weights import convert_grm_checkpoint
from grm_jax import load_model, save_model
from grm_jax.datasets.sample_generator import ensure_sample_dataset
from grm_jax.errors import ConfigError
from grm_jax.track.frames import read_image
from grm_jax.track.tracker import Tracker
from grm_jax.vot import parse_args, region_to_box
from overlay_venv import cached_jax_env, overlay_for_extra

TRACKER_ID = "grm_jax_tiny"


@pytest.fixture(scope="module")
def toolkit():
    """The Python of a venv with the toolkit installed."""
    return overlay_for_extra("vot")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "state_dict.npz"))
    return save_model(tmp_path_factory.mktemp("vot_model") / "grm_tiny", config, variables)


def _write_registry(directory, model_dir):
    """trackers.ini as README documents it, with the protocol and command our tests run."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "trackers.ini").write_text(
        f"[{TRACKER_ID}]\nlabel = GRM tiny (grm-jax)\nprotocol = trax\n"
        f"command = {sys.executable} -m grm_jax.vot\nenv_GRM_MODEL = {model_dir}\nenv_GRM_THRESHOLD = 0\n"
        f"timeout = {timeout_s(300):.0f}\n")


def _vot(toolkit, tmp_path, *args) -> str:
    """Runs the toolkit CLI; returns its output (the tracker's log included). Fails on exit != 0."""
    # the toolkit passes its environment on to our tracker (JAX's compilation cache included)
    env = cached_jax_env(toolkit, VOT_RESULTS_BINARY="0", TMPDIR=str(tmp_path), MPLBACKEND="Agg")
    proc = subprocess.run([str(toolkit), "-m", "vot", *args], capture_output=True, text=True, env=env,
                          timeout=timeout_s(900), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.slow
@pytest.mark.venv
@pytest.mark.multiprocess
def test_vot_test_passes_on_the_toolkits_synthetic_sequence(toolkit, model_dir, tmp_path):
    _write_registry(tmp_path / "registry", model_dir)
    out = _vot(toolkit, tmp_path, "--registry", str(tmp_path / "registry"), "test", TRACKER_ID)
    # `vot test` logs tracker errors and still exits 0: check its own verdict and every frame
    assert "Test concluded successfuly" in out, out[-4000:]
    assert "Error during tracker execution" not in out
    assert "Processing frame 49/49" in out
    assert out.count("@@TRAX:state") == 50  # the init reply and 49 tracked frames


def _make_workspace(root, model_dir):
    """A VOT workspace: one generated sample sequence (color/*.jpg, groundtruth.txt, sequence)."""
    sample = ensure_sample_dataset(root / "sample", num_train=0, num_val=1)
    src = root / "sample" / "val" / "GOT-10k_Val_000001"
    assert str(src).startswith(sample)
    ws = root / "ws"
    seq = ws / "sequences" / "sample1"
    (seq / "color").mkdir(parents=True)
    for p in sorted(src.glob("*.jpg")):
        shutil.copy(p, seq / "color" / p.name)
    shutil.copy(src / "groundtruth.txt", seq / "groundtruth.txt")
    (seq / "sequence").write_text("channels.color=color/%08d.jpg\nfps=30\nformat=default\nname=sample1\n")
    (ws / "sequences" / "list.txt").write_text("sample1\n")
    (ws / "stack.yaml").write_text("title: grm-jax local\nexperiments:\n  baseline:\n    type: unsupervised\n"
                                   "    repetitions: 1\n    analyses:\n      - type: average_accuracy\n"
                                   "        name: accuracy\n        burnin: 0\n")
    (ws / "config.yaml").write_text("registry:\n- ./trackers.ini\nstack: stack.yaml\n")
    _write_registry(ws, model_dir)
    return ws, seq


def _our_boxes(model_dir, seq):
    """Our Tracker on the same frames, initialized with the box TraX delivers (float32 values)."""
    model, variables = load_model(model_dir)
    frames = [read_image(p) for p in sorted((seq / "color").glob("*.jpg"))]
    gt0 = np.loadtxt(seq / "groundtruth.txt", delimiter=",", dtype=np.float32)[0].astype(np.float64)
    tracker = Tracker(model, variables, None, threshold=0.0)
    tracker.initialize(frames[0], gt0)
    return np.asarray([tracker.track(f) for f in frames[1:]])


@pytest.mark.slow
@pytest.mark.venv
@pytest.mark.multiprocess
def test_workspace_evaluate_and_analysis_record_our_boxes(toolkit, model_dir, tmp_path):
    ws, seq = _make_workspace(tmp_path, model_dir)
    _vot(toolkit, tmp_path, "evaluate", "--workspace", str(ws), TRACKER_ID)
    out = _vot(toolkit, tmp_path, "analysis", "--workspace", str(ws), "--name", "grm", TRACKER_ID)
    assert "Analysis successful" in out, out[-4000:]

    lines = (ws / "results" / TRACKER_ID / "baseline" / "sample1" / "sample1_001.txt").read_text().split()
    assert lines[0] == "1"  # the toolkit's code for the initialization frame
    recorded = np.asarray([[float(v) for v in line.split(",")] for line in lines[1:]])
    ours = _our_boxes(model_dir, seq)
    assert recorded.shape == ours.shape == (len(list((seq / "color").glob("*.jpg"))) - 1, 4)
    assert np.ptp(ours[:, 0]) > 1.0  # the boxes move: not a constant answer
    # TraX sends each region as text with 4 decimals, read back as float32
    np.testing.assert_allclose(recorded, ours, rtol=0, atol=1e-4)

    report = json.loads((ws / "analysis" / "grm.json").read_text())
    assert TRACKER_ID in report["trackers"]
    assert report["sequences"]["sample1"]["length"] == len(lines)
    accuracy = np.asarray(report["results"]["baseline"]["results"], dtype=float)
    assert accuracy.size == 1 and 0.0 <= float(accuracy.ravel()[0]) <= 1.0


# ---------------------------------------------------------------------------------------------
# The entry point's own checks (no toolkit)
# ---------------------------------------------------------------------------------------------

def test_options_come_from_flags_then_environment():
    env = {"GRM_MODEL": "/env/model", "GRM_THRESHOLD": "0.4", "GRM_DTYPE": "bfloat16"}
    args = parse_args([], env)
    assert (args.model, args.threshold, args.dtype, args.config) == ("/env/model", 0.4, "bfloat16", None)
    args = parse_args(["--model", "/flag/model", "--threshold", "0"], env)
    assert (args.model, args.threshold) == ("/flag/model", 0.0)
    with pytest.raises(ConfigError, match="pass --model DIR or set GRM_MODEL"):
        parse_args([], {})
    with pytest.raises(ConfigError, match="GRM_THRESHOLD='high': not a number"):
        parse_args([], {"GRM_MODEL": "m", "GRM_THRESHOLD": "high"})
    with pytest.raises(ConfigError, match="GRM_DTYPE='fp16': expected one of float32, bfloat16"):
        parse_args([], {"GRM_MODEL": "m", "GRM_DTYPE": "fp16"})


@pytest.mark.multiprocess
def test_entry_point_reports_a_missing_model_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "grm_jax.vot", "--model", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=timeout_s(300))
    assert proc.returncode == 2
    assert proc.stderr.startswith("grm-jax-vot: error: ") and "nope" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_regions_become_xywh_boxes():
    from trax import Polygon, Rectangle

    np.testing.assert_array_equal(region_to_box(Rectangle.create(10.5, 20.25, 30, 40)), [10.5, 20.25, 30, 40])
    polygon = Polygon.create([(10.0, 20.0), (40.0, 22.0), (38.0, 60.0), (12.0, 58.0)])
    np.testing.assert_array_equal(region_to_box(polygon), [10, 20, 30, 40])


def test_readme_creates_the_workspace_before_vot_initialize():
    """vot-toolkit 0.9's ``vot initialize ... --workspace DIR`` fails unless DIR exists: README's
    VOT section makes the folder first."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## VOT toolkit"):readme.index("\n## ", readme.index("## VOT toolkit") + 1)]
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S) for line in block.splitlines()]
    init = next(i for i, line in enumerate(lines) if re.search(r"\bvot initialize\b.*--workspace (\S+)", line))
    workspace = re.search(r"--workspace (\S+)", lines[init]).group(1)
    assert any(line.startswith(f"mkdir -p {workspace}") for line in lines[:init]), lines[:init + 1]


# A TraX client (vot-trax's own Client, as the toolkit uses it) driving our server through one
# scenario: prints JSON {"error": the client's TraxException or None, "boxes": replies, "rc", "stderr"}.
TRAX_DRIVER = r"""
import json, subprocess, sys
import numpy as np
from trax import FileImage, MemoryImage, Rectangle, TraxException
from trax.client import Client

scenario, model = sys.argv[1], sys.argv[2]
server = subprocess.Popen([sys.executable, "-m", "grm_jax.vot", "--model", model], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
frame = np.zeros((48, 64, 3), np.uint8)
frame[10:30, 20:40] = 200
steps = {
    "ok": [(frame, (20, 10, 20, 20)), frame, frame],
    "outside": [(frame, (1000, 1000, 10, 10))],
    "zero_size": [(frame, (20, 10, 0, 20))],
    "missing_path": [("/nonexistent/frame.jpg", (20, 10, 20, 20))],
    "other_size": [(frame, (20, 10, 20, 20)), np.zeros((96, 128, 3), np.uint8)],
}[scenario]
error, boxes = None, []
try:
    client = Client(stream=(server.stdin.fileno(), server.stdout.fileno()), timeout=300, log=lambda text: None)
    for step in steps:
        image, region = step if isinstance(step, tuple) else (step, None)
        image = FileImage.create(image) if isinstance(image, str) else MemoryImage.create(image)
        if region is not None:
            objects, _ = client.initialize({"color": image}, [(Rectangle.create(*region), {})], {})
        else:
            objects, _ = client.frame({"color": image}, {}, [])
        boxes.append(list(objects[0][0].bounds()))
    client.quit()
except TraxException as err:
    error = str(err)
server.stdin.close()
rc = server.wait(timeout=300)
print(json.dumps({"error": error, "boxes": boxes, "rc": rc, "stderr": server.stderr.read().decode()}))
"""


def _jax_env(cache_dir):
    import os

    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def _trax_scenario(scenario, model_dir, tmp_path):
    env = _jax_env(tmp_path / "jax-cache")
    proc = subprocess.run([sys.executable, "-c", TRAX_DRIVER, scenario, str(model_dir)], capture_output=True,
                          text=True, timeout=timeout_s(150), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.multiprocess
@pytest.mark.slow
def test_trax_server_refuses_bad_requests_without_hanging(model_dir, tmp_path):
    """17.6 / 18.7 / 18.8: a region outside the image, a zero-size region, a missing image path and a
    frame of another size than the first end the session with a TraX quit message carrying one
    line (the client sees it) and exit status 2; stderr holds that line only, no vot-trax
    traceback, and the hint names a flag the server has. A good session still works."""
    ok = _trax_scenario("ok", model_dir, tmp_path)
    assert ok["error"] is None and ok["rc"] == 0 and len(ok["boxes"]) == 3, ok
    expected = {"outside": "init box [1000.0, 1000.0, 10.0, 10.0] lies entirely outside the 64x48 image",
                "zero_size": "w = 0.0 must be > 0",
                "missing_path": "missing frame file: /nonexistent/frame.jpg",
                "other_size": "VOT frame 1: 128x96 pixels, but the first frame of the sequence is 64x48"}
    for scenario, message in expected.items():
        r = _trax_scenario(scenario, model_dir, tmp_path)
        assert r["rc"] == 2 and message in (r["error"] or ""), (scenario, r)
        lines = r["stderr"].strip().splitlines()
        assert lines[0].startswith("grm-jax-vot: error: ") and message in lines[0], (scenario, r["stderr"])
        assert "Traceback" not in r["stderr"], (scenario, r["stderr"])
        assert lines[-1].strip() == "(run with --verbose or GRM_VOT_DEBUG=1 for the traceback)", r["stderr"]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_trax_server_exits_on_garbage(model_dir, tmp_path):
    """17.6: bytes that are not TraX (and a malformed TraX line) end the server with one line and
    exit status 2 once the client closes the pipe; never a hang, never a traceback. --verbose is
    a flag of the server (the hint names it)."""
    env = _jax_env(tmp_path / "jax-cache")
    cases = {  # libtrax alone: an 18 GB allocation (the first two), segfaults (the next three)
        b"@@TRAX:initialize nonsense\n": "not a TraX message",
        b"hello \x00\xff not trax\n": "not a TraX message",
        b"@@TRAX:initialize\n": "malformed TraX initialize message",
        b'@@TRAX:initialize "1,2,3,4" "a=b"\n': "malformed TraX initialize message",
        b'@@TRAX:initialize "1,2,3,4"\n': "a TraX initialize message without its images",
        b"": "TraX: ",
    }
    for garbage, message in cases.items():
        proc = subprocess.run([sys.executable, "-m", "grm_jax.vot", "--model", str(model_dir)], input=garbage,
                              capture_output=True, timeout=timeout_s(150), env=env)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (garbage, err[-3000:])
        assert err.startswith("grm-jax-vot: error: TraX: ") and message in err, (garbage, err[-3000:])
        assert "Traceback" not in err and b'@@TRAX:quit "trax.reason=' in proc.stdout, err[-3000:]
    proc = subprocess.run([sys.executable, "-m", "grm_jax.vot", "--model", str(model_dir), "--verbose"],
                          input=b"garbage\n", capture_output=True, timeout=timeout_s(150), env=env)
    assert proc.returncode == 2 and b"Traceback" in proc.stderr and b"unrecognized arguments" not in proc.stderr
