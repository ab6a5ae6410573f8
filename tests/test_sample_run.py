"""The sample run (no dataset configured): the generated data, the run config and banner it trains
with, and a CI-size end-to-end run through ``run_train`` that ends with the score table of our
tracker next to the first-frame-box baseline."""
import math
import os
import re

import numpy as np
import pytest

from grm_jax.configuration import load_run_config
from grm_jax.datasets import sample_generator as gen
from grm_jax.train import loop, sample_run
from launch import TRAIN_PARTS
from models import MICRO as TEST_MODEL
from train_utils import MICRO_OVERRIDES

# CI size: the tests' micro model and a small dataset instead of the sample config's (that config is
# checked in test_cpu_sample_config without training), given as command-line values.
MICRO = [o.removeprefix("--config.") for o in MICRO_OVERRIDES]


def _tree(path):
    out = {}
    for base, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(base, f), "rb") as fh:
                out[os.path.relpath(os.path.join(base, f), path)] = fh.read()
    return out


def test_generator_sizes_reuse_and_versions(tmp_path):
    small = gen.ensure_sample_dataset(tmp_path / "small", num_train=2, num_val=1)
    big = gen.ensure_sample_dataset(tmp_path / "big", num_train=3, num_val=2)
    a, b = _tree(small), _tree(big)
    # sequence k depends only on (seed, split, k): the bigger dataset extends the smaller one
    shared = [k for k in a if "Train_000001" in k or "Train_000002" in k or "Val_000001" in k]
    assert shared and all(a[k] == b[k] for k in shared)
    assert gen.ensure_sample_dataset(big) == big  # readers accept any size
    with pytest.raises(FileExistsError, match="other parameters"):
        gen.ensure_sample_dataset(big, num_train=4, num_val=2)
    # a dataset of an older generator version is replaced
    old = tmp_path / "old"
    (old / "train").mkdir(parents=True)
    (old / ".complete").write_text("grm-jax-sample-v1 seed=20230601 train=8 val=3\n")
    gen.ensure_sample_dataset(old, num_train=1, num_val=1)
    assert (old / ".complete").read_text().startswith(gen.SAMPLE_VERSION)
    assert sorted(os.listdir(old / "train")) == ["GOT-10k_Train_000001", "list.txt"]
    assert not [p for p in os.listdir(tmp_path) if ".old-" in p or ".tmp-" in p]


def test_uses_sample_data():
    run = load_run_config("grm_got")
    assert sample_run.uses_sample_data(run)
    assert not sample_run.uses_sample_data(load_run_config("grm_got", ["data.roots.got10k=/data/GOT10k"]))
    assert not sample_run.uses_sample_data(load_run_config("grm_got", ["data.packed_dir=/data/packs"]))
    mix = load_run_config("grm", ["data.roots.lasot=/data/LaSOT"])  # one of four roots set
    assert not sample_run.uses_sample_data(mix)


def test_cpu_sample_config(tmp_path, monkeypatch):
    """The sample run IS configs/grm_sample_cpu.py (plus command-line values), announced."""
    monkeypatch.setattr(sample_run, "SAMPLE_TRAIN_SEQUENCES", 2)
    monkeypatch.setattr(sample_run, "SAMPLE_VAL_SEQUENCES", 1)
    run = load_run_config("grm_got", [f"data.roots.sample={tmp_path / 'data'}",
                                      "init.mae=/weights/mae_pretrain_vit_base.pth"])
    new, banner = sample_run.sample_run_config(run, "cpu", 1, 1)
    file = load_run_config("grm_sample_cpu")
    assert new.model == file.model == run.model.replace(
        embed_dim=128, depth=4, num_heads=4, head_channels=64, template_size=64, search_size=128,
        predictor_hidden=(64, 32), drop_path_rate=0.0)  # reduced, same relation and division rule
    assert new.model.divide_layers == tuple(range(1, new.model.depth))
    assert new.data.datasets == ("sample_train",) and new.data.roots["sample"] == str(tmp_path / "data")
    assert (tmp_path / "data" / "val" / "list.txt").read_text().split() == ["GOT-10k_Val_000001"]
    assert new.data.num_workers == 0 and new.init.mae is None
    t = new.train
    assert (t.batch_size, t.max_steps, t.lr, t.backbone_lr_mult, t.keep_checkpoints) == (8, 2800, 5e-4, 1.0, 1)
    assert t.warmup_steps == 300 and t.divide_lr == t.lr
    assert new.train == file.train and new.data.search_jitter == file.data.search_jitter
    sched = loop.plan_schedule(t, new.data.samples_per_epoch)
    assert sched.total_steps == 2800 and sched.drop_step == int(0.8 * 2800)
    assert t.eval_after and new.eval.batch_sequences == 6
    for text in ("REDUCED", "dim 128", "dim 768", "--config.data.roots.got10k=", "GPU or TPU", "grm_sample_cpu.py",
                 "2800 steps x 8 pairs", "(warmup 300 steps)", "config.init.mae is ignored"):
        assert text in banner, text
    # a command-line value wins over the sample config: train.max_steps cuts the schedule
    short, _ = sample_run.sample_run_config(load_run_config("grm_got", ["train.max_steps=3", f"data.roots.sample={tmp_path / 'data'}"]), "cpu", 1, 1)
    assert short.train.max_steps == 3


def test_accelerator_keeps_the_configured_model(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_run, "SAMPLE_TRAIN_SEQUENCES", 1)
    monkeypatch.setattr(sample_run, "SAMPLE_VAL_SEQUENCES", 1)
    run = load_run_config("grm_got", [f"data.roots.sample={tmp_path}"])
    new, banner = sample_run.sample_run_config(run, "gpu", 3, 1)
    assert new.model == run.model and "REDUCED" not in banner and "the configured GRM" in banner
    assert new.train.batch_size % 3 == 0 and new.train.batch_size >= load_run_config("grm_sample_accelerator").train.batch_size


@pytest.mark.slow
def test_end_to_end_table(tmp_path, monkeypatch, capsys):
    """CI-size sample run through run_train: a few steps of a micro model, then the table."""
    monkeypatch.setattr(sample_run, "SAMPLE_TRAIN_SEQUENCES", 3)
    monkeypatch.setattr(sample_run, "SAMPLE_VAL_SEQUENCES", 2)
    run = load_run_config("grm_got", ["train.max_steps=2", "train.batch_size=8", f"data.roots.sample={tmp_path / 'data'}",
                                      *MICRO])
    out = loop.run_train(run, tmp_path / "run", TRAIN_PARTS)
    assert out["step"] == 2
    printed = capsys.readouterr().out
    # every model value is given on the command line, and the user's values win over the sample config
    # (its REDUCED model is checked in test_cpu_sample_config)
    assert "SHORT DEMONSTRATION RUN" in printed and "REDUCED" not in printed
    assert f"model:    the configured GRM: dim {TEST_MODEL.embed_dim}, depth {TEST_MODEL.depth}," in printed
    table = out["eval"]
    assert table in printed
    rows = {}
    for name in (sample_run.OURS, sample_run.BASELINE):
        m = re.search(re.escape(name) + r"\s+(\S+)\s+(\S+)", table)
        assert m, table
        rows[name] = [float(v) for v in m.groups()]
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in rows[name]), table
    report = tmp_path / "run" / "eval_sample"
    assert (report / "success_plot.png").is_file() and (report / "results.md").is_file()
    assert str(report / "success_plot.png") in table
    # the baseline repeats the first box: its files hold the init box in every row
    gt = np.loadtxt(tmp_path / "data" / "val" / "GOT-10k_Val_000001" / "groundtruth.txt", delimiter=",")
    base = np.loadtxt(report / "first_frame_box" / "GOT-10k_Val_000001.txt")
    np.testing.assert_allclose(base, np.repeat(gt[:1], len(gt), axis=0), atol=1e-3)
