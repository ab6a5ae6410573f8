"""Bundled run configs (installed as ``grm_jax.configs``). Each module's ``get_config()``
returns an ``ml_collections.ConfigDict`` built from ``grm_jax.run_config.default_configdict()``;
pass a file path or a bundled name to ``--config``: grm_got, grm, grm_l320, grm_tiny_cpu, grm_sample_cpu (the CPU sample run),
grm_sample_accelerator (the GPU/TPU sample run)."""
