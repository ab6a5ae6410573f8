"""GRM-GOT: ViT-B/16, search 256, GOT-10k train (full split) only, 100 epochs, LR drop at 80.

Run (generated sample data and a short schedule when no dataset root is given):
    python launch.py --config configs/grm_got.py
Real recipe:
    python launch.py --config configs/grm_got.py --workdir runs/grm_got \
        --config.data.roots.got10k=/data/GOT10k --config.init.mae=/weights/mae_pretrain_vit_base.pth
"""
from grm_jax.run_config import default_configdict


def get_config():
    c = default_configdict()
    c.data.datasets = ["got10k_train_full"]
    c.data.ratios = [1.0]
    c.train.epochs, c.train.lr_drop_epoch = 100, 80
    return c
