"""Training refuses bad settings with one error naming the key, before any heavy work, and plans
its step schedule from the typed config."""
import pytest

from grm_jax.configuration import load_run_config
from grm_jax.errors import ConfigError, MissingFileError
from grm_jax.train import loop
from launch import TRAIN_PARTS


def test_missing_dataset_root_is_named(tmp_path):
    missing = tmp_path / "no_such" / "GOT10k"
    run = load_run_config("grm_got", [f"data.roots.got10k={missing}"])
    with pytest.raises(MissingFileError, match=r"config\.data\.roots\.got10k=.*no_such/GOT10k.*no such directory"):
        loop.run_train(run, tmp_path / "w", TRAIN_PARTS)
    assert not (tmp_path / "w").exists()


def test_missing_mae_file_is_named(tmp_path):
    run = load_run_config("grm_tiny_cpu", [f"init.mae={tmp_path / 'mae_pretrain_vit_base.pth'}"])
    with pytest.raises(MissingFileError, match=r"config\.init\.mae=.*mae_pretrain_vit_base\.pth"):
        loop.check_paths(run)


@pytest.mark.parametrize("override, key", [("train.max_steps=0", "train.max_steps"),
                                           ("train.max_steps=-3", "train.max_steps"),
                                           ("train.lr=nan", "train.lr"),
                                           ("train.lr_drop_epoch=0", "train.lr_drop_epoch"),
                                           ("train.warmup_steps=-1", "train.warmup_steps")])
def test_bad_training_values_refused_by_the_config(override, key):
    with pytest.raises(ConfigError, match=rf"config\.{key}="):
        load_run_config("grm_tiny_cpu", [override])


def test_schedules():
    run = load_run_config("grm_got", ["data.roots.got10k=/data/GOT10k"])  # the recipe: 100 epochs x 60000 / 320
    s = loop.plan_schedule(run.train, run.data.samples_per_epoch, num_devices=8)
    assert (s.global_batch, s.steps_per_epoch, s.total_steps, s.drop_step) == (320, 187, 18700, 80 * 187)
    with pytest.raises(ConfigError, match=r"train\.batch_size=320 must be divisible .* devices \(7\)"):
        loop.plan_schedule(run.train, run.data.samples_per_epoch, num_devices=7)
    tiny = load_run_config("grm_tiny_cpu")  # max_steps cuts the schedule
    s = loop.plan_schedule(tiny.train, tiny.data.samples_per_epoch)
    assert (s.total_steps, s.global_batch, s.steps_per_epoch) == (200, 8, 200)
