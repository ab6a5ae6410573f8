"""The sample run on a CPU: what `python launch.py --config configs/grm_got.py` (or any config)
trains when no dataset root is configured, announced by a banner. Also runnable directly:

    python launch.py --config configs/grm_sample_cpu.py --workdir runs/sample

A REDUCED GRM (same code and token division; width 128, depth 4, crops 64 / 128) from random
weights, 2800 steps x 8 pairs of 500 generated sequences (written once to data.roots.sample,
default ~/.cache/grm_jax/sample_run-500-6), LR 5e-4 for every parameter group after a 300-step
linear warmup (x0.1 after 80 %), search-crop centre jitter 2 (the official 3 puts the target
anywhere in a crop this small; 1 teaches "answer the centre"), then the final model and the
first-frame-box baseline scored on 6 validation sequences. About 5 minutes on a 2-core AVX-512
CPU (README, "What you will see").

Why the warmup: without it the model sits on the "predict the centre" plateau for most of the run
and whether it leaves it in time depends on the machine's rounding: the same commit gave AO 43.9
on one CPU and 12.5 on another (first-frame box 17.9). With it, three seeds all learn
(benchmarks/RESULTS.md, "Sample run recipe").
"""
from grm_jax.configs.grm_got import get_config as got_config

STEPS, BATCH = 2800, 8


def get_config():
    c = got_config()
    c.model.update(dict(embed_dim=128, depth=4, num_heads=4, head_channels=64, patch_size=16, template_size=64,
                        search_size=128, predictor_hidden=[64, 32], drop_path_rate=0.0, divide_layers="1-3"))
    c.train.update(dict(batch_size=BATCH, epochs=10, lr_drop_epoch=8, max_steps=STEPS, lr=5e-4, backbone_lr_mult=1.0,
                        divide_lr=5e-4, warmup_steps=300, weight_decay=1e-4, checkpoint_every_steps=STEPS // 4,
                        keep_checkpoints=1, log_every_steps=50, eval_after=True))
    c.data.update(dict(datasets=["sample_train"], ratios=[1.0], samples_per_epoch=STEPS // 10 * BATCH, num_workers=0))
    c.data.search_jitter.center = 2.0
    c.eval.batch_sequences = 6
    return c
