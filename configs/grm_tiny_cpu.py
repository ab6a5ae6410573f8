"""Tiny GRM for CPU runs and tests: dim 192, depth 4, 3 heads, head channels 64,
template 128 / search 256, generated sample data, a few hundred steps.

    python launch.py --config configs/grm_tiny_cpu.py --workdir runs/tiny
"""
from grm_jax.configs.grm_got import get_config as got_config


def get_config():
    c = got_config()
    c.model.update(dict(embed_dim=192, depth=4, num_heads=3, head_channels=64, divide_layers="1-3",
                        drop_path_rate=0.0))
    c.train.update(dict(batch_size=8, epochs=1, lr_drop_epoch=1, checkpoint_every_steps=50,
                        log_every_steps=10, max_steps=200))
    c.data.samples_per_epoch = 1600
    c.data.num_workers = 0
    return c
