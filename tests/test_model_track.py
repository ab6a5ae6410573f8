"""Models carry their track settings (issue 15.1), one resolver per setting (15.2), and a checked,
checksummed model_config.json (issues 17.5, 18.5).

* a GRM-L320-shaped model (tiny dims, search 320, the grm_l320 track section) evaluated with
  ``--config grm`` crops at factor 5 and says so in one line; the command line still wins;
* ``python -m convert_weights grm --config grm_l320`` records factor 5, and without --config the
  converter picks the bundled config of the same architecture;
* a threshold the run config accepts is never refused later (1.0 is refused by both, naming it);
* model_config.json: a flipped num_heads is caught by weights.sha256; wrong types, ``{}`` and a giant
  depth are refused naming the file and key before anything is allocated.
"""
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from conftest import FIXTURES
from grm_jax import checkpoint as ckpt_lib
from grm_jax import load_model, save_model
from grm_jax.configuration import load_run_config
from grm_jax.errors import CheckpointError, ConfigError
from grm_jax.evaluate import runner
from grm_jax.model import GRM, init_variables
from grm_jax.track.tracker import Tracker
from grm_jax.track_settings import ModelTrack, resolve_for_checkpoint, resolve_threshold
from models import MICRO
from run_once import build_once

TT = FIXTURES / "track_tiny"
# GRM-L320's crop geometry (template 128, search 320) on the tests' micro network.
L320_SHAPED = MICRO.replace(template_size=128, search_size=320)


@pytest.fixture(scope="session")
def l320_dir(tmp_path_factory):
    """The saved GRM-L320-shaped model with grm_l320's track section: built once per test run (all
    xdist workers share it; read-only, tests that change it copy it first)."""
    def build(folder):
        variables = init_variables(GRM(L320_SHAPED), jax.random.PRNGKey(0))
        save_model(folder / "l320_tiny", L320_SHAPED, variables, load_run_config("grm_l320").track)

    return build_once(tmp_path_factory, "l320_model", build) / "l320_tiny"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    import cv2

    data = np.load(TT / "frames.npz")
    root = tmp_path_factory.mktemp("bench")
    seq = root / "one"
    seq.mkdir()
    for i in range(3):
        cv2.imwrite(str(seq / f"{i + 1:05d}.jpg"), cv2.cvtColor(data["frames"][i], cv2.COLOR_RGB2BGR))
    (seq / "groundtruth.txt").write_text("\n".join(",".join(f"{v:g}" for v in b) for b in data["gt_visible_xywh"][:3]))
    return root


@pytest.mark.slow
def test_l320_model_evaluated_with_grm_config_crops_at_factor_5(l320_dir, bench, tmp_path, capsys):
    assert json.loads((l320_dir / ckpt_lib.TRACK_FILE).read_text())["search_factor"] == 5.0
    run = load_run_config("grm")  # its track section says factor 4
    assert run.track.search_factor == 4.0
    runner.run_evaluate(run, str(l320_dir), f"folder:{bench}", str(tmp_path / "a"))
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "a" / "run_manifest.json").read_text())
    assert manifest["track"]["search_factor"] == 5.0
    assert "track.search_factor=5.0 from" in out and "wins over the run config's 4.0" in out
    # the command line wins over the model, and says so
    run = load_run_config("grm", ["track.search_factor=4.0"])
    lines = []
    settings = resolve_for_checkpoint(run, l320_dir, say=lines.append)
    assert settings.track.search_factor == 4.0 and "from the command line overrides" in lines[0]


def test_tracker_crop_uses_the_model_factor(l320_dir):
    """The search crop of the resolved settings covers 5 x sqrt(w*h), not 4."""
    settings = resolve_for_checkpoint(load_run_config("grm"), l320_dir, say=lambda _: None)
    model, variables = load_model(l320_dir)
    tracker = Tracker(model, variables, settings.track, settings.threshold)
    frames = np.load(TT / "frames.npz")["frames"]
    tracker.initialize(frames[0], (100.0, 80.0, 40.0, 40.0))
    tracker.track(frames[1])
    assert tracker.params.search_factor == 5.0
    assert tracker.last_resize_factor == pytest.approx(320 / 200.0)  # crop side ceil(40 * 5) = 200


def test_converter_records_the_track_section(tmp_path):
    from convert_weights.__main__ import main

    src = str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar")
    assert main(["grm", src, str(tmp_path / "l320"), "--config", "grm_l320"]) == 0
    assert ckpt_lib.read_model_track(tmp_path / "l320").search_factor == 5.0
    assert main(["grm", src, str(tmp_path / "auto")]) == 0  # dim 192, depth 4: grm_tiny_cpu's shapes
    assert ckpt_lib.read_model_track(tmp_path / "auto") == ModelTrack.of(load_run_config("grm_tiny_cpu").track)


def test_threshold_validation_is_one_rule():
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="track.threshold"):
            load_run_config("grm", [f"track.threshold={bad}"])
    run = load_run_config("grm", ["track.threshold=0.99"])
    assert resolve_threshold(run, None, "lasot") == 0.99  # accepted by the config: never refused later
    model = ModelTrack(thresholds={"lasot": 0.3})
    assert resolve_threshold(load_run_config("grm"), model, "lasot") == 0.3  # the model's own
    assert resolve_threshold(load_run_config("grm"), model, "uav123") == 0.55  # the registry's
    assert resolve_threshold(run, model, "lasot") == 0.99  # the command line wins


@pytest.fixture
def tiny_dir(l320_dir, tmp_path):
    return shutil.copytree(l320_dir, tmp_path / "m")


def test_flipped_num_heads_is_caught_by_the_checksum(tiny_dir):
    path = tiny_dir / ckpt_lib.CONFIG_FILE
    path.write_text(path.read_text().replace('"num_heads": 2', '"num_heads": 1'))
    with pytest.raises(CheckpointError, match="model_config.json does not match its sha256"):
        load_model(tiny_dir)


@pytest.mark.parametrize("key,value,needle", [
    ("mlp_ratio", "four", "mlp_ratio='four': expected a number"),
    ("depth", 100000, "depth=100000: expected an integer in \\[1, 64\\]"),
    ("layernorm_eps", -1.0, "layernorm_eps=-1.0"),
    ("num_heads", True, "num_heads=True"),
    ("divide_layers", "all", "divide_layers='all'"),
])
def test_bad_model_config_values_name_file_and_key(tiny_dir, key, value, needle):
    path = tiny_dir / ckpt_lib.CONFIG_FILE
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=f"model_config.json: {needle}"):
        ckpt_lib.read_model_config(tiny_dir)


def test_empty_or_wrong_root_model_config_refused(tiny_dir):
    path = tiny_dir / ckpt_lib.CONFIG_FILE
    for text, needle in (("{}", "missing model config keys"), ("[1, 2]", "expected a JSON object"),
                         ("{" * 5000, "not valid JSON")):
        path.write_text(text)
        with pytest.raises(CheckpointError, match=needle):
            ckpt_lib.read_model_config(tiny_dir)


def test_bad_track_config_refused(tiny_dir):
    path = tiny_dir / ckpt_lib.TRACK_FILE
    path.write_text(json.dumps({"template_factor": 2.0, "search_factor": "5", "clip_margin": 10, "thresholds": {}}))
    with pytest.raises(CheckpointError, match="track_config.json: search_factor='5'"):
        ckpt_lib.read_model_track(tiny_dir)


def test_giant_depth_in_a_workdir_is_refused_before_allocating(tmp_path):
    """A training workdir has no manifest: the range check alone must stop it (fast, no hang)."""
    (tmp_path / "checkpoints" / "1" / "variables").mkdir(parents=True)
    data = L320_SHAPED.to_dict()
    data["depth"] = 100000
    (tmp_path / ckpt_lib.CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="depth=100000"):
        load_model(tmp_path)


def test_old_manifest_without_config_is_refused(tiny_dir):
    manifest = tiny_dir / ckpt_lib.MANIFEST_FILE
    lines = [ln for ln in manifest.read_text().splitlines() if "variables/" in ln]
    manifest.write_text("\n".join(lines) + "\n")
    (tiny_dir / ckpt_lib.TRACK_FILE).unlink()
    with pytest.raises(CheckpointError, match="does not cover model_config.json"):
        load_model(pathlib.Path(tiny_dir))
