"""Machine-local dataset folders (issue 15.4): ~/.config/grm_jax/datasets.json and GRM_DATA_ROOT,
read once at the edge; the command line and the config file still win; --mode=datasets and the
banners say where each root came from."""
import json
import subprocess
import sys

import pytest

from conftest import timeout_s
from grm_jax.configuration import load_run_config
from grm_jax.datasets import dataset_root
from grm_jax.errors import ConfigError
from grm_jax.train import sample_run

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A user file naming got10k and lasot, and a GRM_DATA_ROOT holding lasot and coco."""
    parent = tmp_path / "all"
    for key in ("lasot", "coco"):
        (parent / key).mkdir(parents=True)
    file = tmp_path / "datasets.json"
    file.write_text(json.dumps({"got10k": str(tmp_path / "GOT10k"), "lasot": str(tmp_path / "LaSOT")}))
    monkeypatch.setenv("GRM_DATASETS_FILE", str(file))
    monkeypatch.setenv("GRM_DATA_ROOT", str(parent))
    return tmp_path, file, parent


def test_precedence_and_sources(local):
    tmp, file, parent = local
    run = load_run_config("grm", ["data.roots.coco=/cli/coco"])
    roots, sources = run.data.roots, run.root_sources
    assert roots["got10k"] == str(tmp / "GOT10k") and sources["got10k"] == str(file)
    assert roots["lasot"] == str(tmp / "LaSOT") and sources["lasot"] == str(file)  # the file wins over the env
    assert roots["coco"] == "/cli/coco" and sources["coco"] == "command line"
    assert roots["trackingnet"] is None and "trackingnet" not in sources
    assert dataset_root("lasot_train", roots) == str(tmp / "LaSOT")  # the one dataset-root function
    assert not sample_run.uses_sample_data(load_run_config("grm_got"))  # got10k is set on this machine


def test_data_root_alone(tmp_path, monkeypatch):
    (tmp_path / "got10k").mkdir()
    monkeypatch.setenv("GRM_DATA_ROOT", str(tmp_path))
    run = load_run_config("grm_got")
    assert run.data.roots["got10k"] == str(tmp_path / "got10k")
    assert run.root_sources["got10k"] == f"GRM_DATA_ROOT={tmp_path}"


@pytest.mark.parametrize("text,needle", [
    ('{"lasott": "/x"}', "unknown dataset root 'lasott'"),
    ('["/x"]', "expected a JSON object"),
    ('{"lasot": 3}', "lasot=3 is not a folder path"),
    ("{not json", "not a readable JSON object"),
])
def test_bad_user_file_names_it(tmp_path, monkeypatch, text, needle):
    file = tmp_path / "datasets.json"
    file.write_text(text)
    monkeypatch.setenv("GRM_DATASETS_FILE", str(file))
    with pytest.raises(ConfigError, match=needle) as info:
        load_run_config("grm")
    assert str(file) in str(info.value)


def test_mode_datasets_lists_roots_and_sources(local):
    tmp, file, parent = local
    out = subprocess.run([sys.executable, str(REPO / "launch.py"), "--config", "grm", "--mode=datasets",
                          "--config.data.roots.coco=/cli/coco"], capture_output=True, text=True,
                         timeout=timeout_s(120))
    assert out.returncode == 0, out.stderr
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines()[1:] if ln.strip()}
    assert f"(from {file})" in lines["got10k"] and "[MISSING]" in lines["got10k"]
    assert "/cli/coco  (from command line)" in lines["coco"]
    assert "not set" in lines["trackingnet"]
