"""The tests' one micro GRM: the home of "a tiny model" for every test that needs a network but not
the official fixture's numbers.

``MICRO`` (dim 64, depth 3, 2 heads, template 32 / search 64, division in blocks 1-2, drop path 0.1)
compiles in seconds on a 2-core CPU. Tests that build it in-process use ``MICRO`` (a test that varies
one switch, e.g. the relation form or the crop sizes, uses ``MICRO.replace(...)``); tests that start
``launch.py`` or load a run config pass ``micro_overrides()`` on top of a bundled config. The
fixture-shaped model (dim 192, depth 4: ``configs/grm_tiny_cpu.py``) comes from converting
``tests/fixtures/grm_tiny`` wherever parity with the official code needs it.

tests/test_suite_setup.py fails when a test file writes its own ``ModelConfig(...)`` again.
"""
import dataclasses

from grm_jax.model.config import ModelConfig

MICRO = ModelConfig(embed_dim=64, depth=3, num_heads=2, head_channels=16, template_size=32, search_size=64,
                    predictor_hidden=(32, 16), divide_layers=(1, 2), drop_path_rate=0.1)


def _literal(value) -> str:
    """``value`` as the run config's override parser reads it back (tuples as lists)."""
    if isinstance(value, tuple):
        return repr(list(value))
    return value if isinstance(value, str) else repr(value)


def micro_overrides(config: ModelConfig = MICRO, prefix: str = "--config.") -> list[str]:
    """Every field of ``config`` as run-config overrides (``--config.model.depth=3``, ...): on top of
    any bundled config they give exactly ``config`` (tests/test_suite_setup.py checks it). With
    ``prefix=""`` they are the ``overrides`` of ``grm_jax.configuration.load_run_config``."""
    return [f"{prefix}model.{f.name}={_literal(getattr(config, f.name))}" for f in dataclasses.fields(config)]
