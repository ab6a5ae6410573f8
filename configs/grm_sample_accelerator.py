"""The sample run on a GPU or TPU: what `python launch.py --config configs/grm_got.py` trains there
when no dataset root is configured. The ViT-B GRM itself from random weights (or --config.init.mae),
1000 steps x 32 pairs of the generated sequences, LR 2e-4 for every group after a 100-step warmup
(the CPU sample run needed one to leave the "predict the centre" plateau reliably), centre jitter 2,
then the score table against the first-frame-box baseline. Sized from the ViT-B step cost for a
few minutes; not measured on an accelerator yet.

    python launch.py --config configs/grm_sample_accelerator.py --workdir runs/sample
"""
from grm_jax.configs.grm_got import get_config as got_config

STEPS, BATCH = 1000, 32


def get_config():
    c = got_config()
    c.train.update(dict(batch_size=BATCH, epochs=10, lr_drop_epoch=8, max_steps=STEPS, lr=2e-4, backbone_lr_mult=1.0,
                        divide_lr=2e-4, warmup_steps=100, weight_decay=1e-4, checkpoint_every_steps=STEPS // 4,
                        keep_checkpoints=1, log_every_steps=50, eval_after=True))
    c.data.update(dict(datasets=["sample_train"], ratios=[1.0], samples_per_epoch=STEPS // 10 * BATCH))
    c.data.search_jitter.center = 2.0
    c.eval.batch_sequences = 6
    return c
