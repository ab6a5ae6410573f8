"""GRM: ViT-B/16, search 256, LaSOT + GOT-10k (vot-excluded) + COCO 2017 + TrackingNet (1:1:1:1),
300 epochs, LR drop at 240.

    python launch.py --config configs/grm.py --workdir runs/grm \
        --config.data.roots.lasot=/data/LaSOT --config.data.roots.got10k=/data/GOT10k \
        --config.data.roots.coco=/data/COCO --config.data.roots.trackingnet=/data/TrackingNet \
        --config.init.mae=/weights/mae_pretrain_vit_base.pth
Evaluate:
    python launch.py --config configs/grm.py --mode=evaluate --checkpoint=DIR --dataset=lasot --workdir=OUT
"""
from grm_jax.run_config import default_configdict


def get_config():
    c = default_configdict()
    c.data.datasets = ["lasot_train", "got10k_vot_train", "coco_train", "trackingnet_train"]
    c.data.ratios = [1.0, 1.0, 1.0, 1.0]
    c.train.epochs, c.train.lr_drop_epoch = 300, 240
    return c
