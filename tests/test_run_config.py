"""The typed run config: built once from a config file + overrides; bad keys and values are
refused with one error naming the key."""
import dataclasses

import pytest

from grm_jax.configuration import BUNDLED_CONFIGS, load_run_config
from grm_jax.datasets import ROOT_KEYS
from grm_jax.errors import ConfigError
from grm_jax.run_config import RunConfig, default_configdict


@pytest.mark.parametrize("name", BUNDLED_CONFIGS)
def test_bundled_configs_build_by_name_and_path(name):
    by_name = load_run_config(name)
    by_path = load_run_config(f"configs/{name}.py")
    assert by_name == by_path
    assert by_name.name == name


def test_defaults_round_trip():
    run = RunConfig.from_configdict(default_configdict())
    assert run.to_dict() == RunConfig().to_dict()
    assert set(run.data.roots) == set(ROOT_KEYS)


def test_l320_states_each_crop_value_once():
    run = load_run_config("grm_l320")
    search = run.crop("search")
    assert (search.size, search.factor, search.center_jitter, search.scale_jitter) == (320, 5.0, 4.5, 0.5)
    template = run.crop("template")
    assert (template.size, template.factor, template.center_jitter) == (128, 2.0, 0.0)


def test_overrides_parse_lists_numbers_and_paths():
    run = load_run_config("grm_got", ["data.datasets=got10k_train_full,lasot_train", "data.ratios=1,2",
                                      "data.roots.lasot=/data/La SOT", "train.max_steps=5", "track.dtype=bfloat16"])
    assert run.data.datasets == ("got10k_train_full", "lasot_train")
    assert run.data.ratios == (1.0, 2.0)
    assert run.data.roots["lasot"] == "/data/La SOT"
    assert run.train.max_steps == 5 and run.track.dtype == "bfloat16"
    one = load_run_config("grm_got", ["data.datasets=got10k_vot_train", "data.ratios=1.0"])
    assert one.data.datasets == ("got10k_vot_train",) and one.data.ratios == (1.0,)


@pytest.mark.parametrize("override, message", [
    (["train.lrr=1"], "did you mean train.lr"),
    (["modle.depth=3"], "did you mean model"),
    (["data.roots.lasott=/x"], "data.roots.lasot"),
    (["train.lr=nan"], "train.lr"),
    (["train.max_steps=0"], "train.max_steps"),
    (["train.max_steps=-3"], "train.max_steps"),
    (["train.bf16=3"], "train.bf16"),
    (["model.num_heads=0"], "num_heads"),
    (["model.num_heads=5"], "num_heads"),
    (["data.datasets=lasot"], "lasot_train"),
    (["data.datasets=got10k_train_full,lasot_train"], "data.ratios"),
    (["track.dtype=float16"], "track.dtype"),
    (["eval.on_bad_frame=ignore"], "eval.on_bad_frame"),
    (["model.divide_layers=a-b"], "divide_layers"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_run_config("grm_got", override)
    assert message in info.value.user_message()


def test_unknown_config_name_suggests_bundled():
    with pytest.raises(ConfigError, match="grm_got"):
        load_run_config("grm_gott")


def test_sections_are_frozen():
    run = load_run_config("grm_tiny_cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.train.lr = 1.0
