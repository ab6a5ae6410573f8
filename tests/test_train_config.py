"""run_train rejects bad configs with errors that name the problem, before any heavy work."""
import pytest

from configs.grm_got import get_config as got_config
from configs.grm_tiny_cpu import get_config as tiny_config
from grm_jax.train import loop


def test_unknown_key_is_named(tmp_path):
    c = tiny_config()
    c.train.learning_rate = 1e-3  # a typo of train.lr
    with pytest.raises(ValueError, match=r"unknown config key 'train\.learning_rate'"):
        loop.run_train(c, tmp_path / "w")
    c = tiny_config()
    c.optimizer = {"lr": 1.0}
    with pytest.raises(ValueError, match=r"unknown config key 'optimizer'"):
        loop.validate_config(c)
    assert not (tmp_path / "w").exists()


def test_missing_dataset_root_is_named(tmp_path):
    c = got_config()
    missing = tmp_path / "no_such" / "GOT10k"
    c.data.roots.got10k = str(missing)
    with pytest.raises(FileNotFoundError, match=r"config\.data\.roots\.got10k=.*no_such/GOT10k.*no such directory"):
        loop.run_train(c, tmp_path / "w")


def test_missing_mae_file_is_named(tmp_path):
    c = tiny_config()
    c.init.mae = str(tmp_path / "mae_pretrain_vit_base.pth")
    with pytest.raises(FileNotFoundError, match=r"config\.init\.mae=.*mae_pretrain_vit_base\.pth"):
        loop.validate_config(c)


def test_crop_size_mismatch_is_named():
    c = tiny_config()
    c.data.search.size = 320
    with pytest.raises(ValueError, match=r"config\.data\.search\.size=320 differs from config\.model\.search_size=256"):
        loop.validate_config(c)


def test_schedules():
    c = got_config()  # no roots: short sample schedule
    s = loop.plan_schedule(c)
    assert s.sample and (s.total_steps, s.global_batch) == (loop.SAMPLE_STEPS, loop.SAMPLE_BATCH)
    c.data.roots.got10k = "/data/GOT10k"  # real recipe: 100 epochs x 60000 / 320
    s = loop.plan_schedule(c, num_devices=8)
    assert not s.sample and (s.global_batch, s.steps_per_epoch, s.total_steps) == (320, 187, 18700)
    with pytest.raises(ValueError, match="divisible"):
        loop.plan_schedule(c, num_devices=7)
    t = tiny_config()  # max_steps respected on sample data
    s = loop.plan_schedule(t)
    assert s.sample and (s.total_steps, s.global_batch) == (200, 8)
