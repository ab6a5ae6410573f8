"""GRM-L320: ViT-L/16, search 320 (factor 5), the GRM dataset mix, 300 epochs, LR drop at 240,
batch 10 per GPU x 8 = 80, search jitter centre 4.5 / scale 0.5.

    python launch.py --config configs/grm_l320.py --workdir runs/grm_l320 \
        --config.data.roots.lasot=/data/LaSOT --config.data.roots.got10k=/data/GOT10k \
        --config.data.roots.coco=/data/COCO --config.data.roots.trackingnet=/data/TrackingNet \
        --config.init.mae=/weights/mae_pretrain_vit_large.pth --config.train.shard_params=True
"""
from grm_jax.configs.grm import get_config as grm_config


def get_config():
    c = grm_config()
    c.model.update(dict(embed_dim=1024, depth=24, num_heads=16, search_size=320, divide_layers="1-23"))
    c.track.search_factor = 5.0
    c.data.search_jitter.update(dict(center=4.5, scale=0.5))
    c.train.batch_size = 80
    return c
