"""Model directories carry a sha256 manifest of their weight files, verified by load_model.

Single-bit flips anywhere in the orbax files, a missing manifest, a missing or an added weight
file: each is a CheckpointError naming the directory and the file. Training workdirs (orbax
CheckpointManager steps, no manifest) keep loading.
"""
import hashlib
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax import load_model, save_model
from grm_jax.checkpoint import (ITEM_VARIABLES, MANIFEST_FILE, VARIABLES_DIR, checkpoints_dir,
                                write_model_config)
from grm_jax.errors import CheckpointError

GRM_NPZ = FIXTURES / "grm_tiny" / "state_dict.npz"


@pytest.fixture(scope="module")
def converted():
    return convert_grm_checkpoint(str(GRM_NPZ))


@pytest.fixture(scope="module")
def saved(converted, tmp_path_factory):
    config, variables = converted
    return save_model(tmp_path_factory.mktemp("model") / "grm_tiny", config, variables)


@pytest.fixture
def model_dir(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "grm_tiny")


def _weight_files(directory):
    root = directory / VARIABLES_DIR
    return sorted(p.relative_to(directory).as_posix() for p in root.rglob("*") if p.is_file())


def _covered_files(directory):
    """What the manifest covers: the two JSON configs and every weight file."""
    return sorted(["model_config.json", "track_config.json", *_weight_files(directory)])


def test_manifest_lists_every_weight_file_in_sha256sum_format(saved):
    lines = (saved / MANIFEST_FILE).read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ")
        listed[name] = digest
    assert sorted(listed) == _covered_files(saved) and len(listed) >= 5
    for name, digest in listed.items():
        assert hashlib.sha256((saved / name).read_bytes()).hexdigest() == digest


def test_bit_flips_in_weight_files_are_detected(model_dir):
    files = _weight_files(model_dir)
    largest = max(files, key=lambda n: (model_dir / n).stat().st_size)
    size = (model_dir / largest).stat().st_size
    positions = [(largest, int(size * f), bit) for f, bit in ((0.0, 0), (0.25, 3), (0.5, 7), (0.75, 1), (0.999, 5))]
    positions += [(name, (model_dir / name).stat().st_size // 2, 2) for name in files if name != largest]
    for name, offset, bit in positions:
        path = model_dir / name
        data = bytearray(path.read_bytes())
        data[offset] ^= 1 << bit
        path.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match=f"weight file {name} does not match its sha256"):
            load_model(model_dir)
        data[offset] ^= 1 << bit
        path.write_bytes(bytes(data))
    load_model(model_dir)  # intact again


def test_missing_manifest_is_reported_as_such(model_dir):
    (model_dir / MANIFEST_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"grm_tiny: no weights manifest \(weights.sha256; written by "
                                              r"grm-jax >= 0.2\)") as info:
        load_model(model_dir)
    assert "do not match" not in str(info.value) and "re-convert" in info.value.hint


def test_added_or_removed_weight_file_is_detected(model_dir):
    extra = model_dir / VARIABLES_DIR / "extra.bin"
    extra.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="variables/extra.bin is not listed in weights.sha256"):
        load_model(model_dir)
    extra.unlink()
    victim = _weight_files(model_dir)[0]
    (model_dir / victim).unlink()
    with pytest.raises(CheckpointError, match=f"weight file {victim} listed in weights.sha256 is missing"):
        load_model(model_dir)


def test_resaving_rewrites_the_manifest(model_dir, converted):
    config, variables = converted
    variables = jax.tree_util.tree_map(lambda a: np.asarray(a) * 2, variables)
    save_model(model_dir, config, variables)
    _, loaded = load_model(model_dir)
    np.testing.assert_array_equal(loaded["params"]["backbone"]["norm"]["scale"],
                                  variables["params"]["backbone"]["norm"]["scale"])


def test_training_workdir_loads_without_manifest(tmp_path, converted):
    """A workdir as the training loop writes it: model_config.json + checkpoints/<step>/variables."""
    config, variables = converted
    workdir = tmp_path / "run"
    write_model_config(workdir, config)
    items = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    with ocp.CheckpointManager(checkpoints_dir(workdir)) as mngr:
        mngr.save(3, args=ocp.args.Composite(**{ITEM_VARIABLES: ocp.args.StandardSave(items)}))
        mngr.wait_until_finished()
    _, loaded = load_model(workdir)
    np.testing.assert_array_equal(loaded["params"]["backbone"]["norm"]["bias"],
                                  variables["params"]["backbone"]["norm"]["bias"])
