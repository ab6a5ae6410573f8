"""Defaults shared by every run config. Each variant's get_config() starts from here.

Sections: model (network shapes, see grm_jax.model.ModelConfig), init (MAE weights),
data (training datasets and pair sampling; dataset roots for training AND evaluation),
train (optimizer, schedule, checkpoints), track (tracking procedure), eval (benchmarks).
"""
import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    c.model = ml_collections.ConfigDict(dict(
        embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, patch_size=16,
        template_size=128, search_size=256, head_channels=256,
        relation="grm",              # grm | one_stream | two_stream | ts | tsa  (paper Table 4)
        divide_layers="1-11",        # 0-based block ranges, e.g. '1-11' (official), '4-11', '0-11', ''
        template_agg="max",          # max | mean
        drop_path_rate=0.1,
        attention="masked",          # masked | separate (inference speed variant)
    ))
    c.init = ml_collections.ConfigDict(dict(
        mae=ml_collections.FieldReference(None, field_type=str),  # path to mae_pretrain_vit_*.pth
        seed=0,
    ))

    c.data = ml_collections.ConfigDict()
    c.data.roots = ml_collections.ConfigDict({name: ml_collections.FieldReference(None, field_type=str) for name in (
        "got10k", "lasot", "trackingnet", "coco",                 # training
        "uav123", "nfs", "avist", "otb100", "tnl2k",              # evaluation only
        "folder")})                                               # <seq>/*.jpg + groundtruth.txt
    c.data.datasets = ["got10k_train_full"]
    c.data.ratios = [1.0]
    c.data.samples_per_epoch = 60000
    c.data.max_gap = 200
    c.data.template = ml_collections.ConfigDict(dict(factor=2.0, size=128, center_jitter=0.0, scale_jitter=0.0))
    c.data.search = ml_collections.ConfigDict(dict(factor=4.0, size=256, center_jitter=3.0, scale_jitter=0.25))
    c.data.num_workers = 8
    c.data.num_threads = 2                 # per-worker decode threads
    c.data.sample_dir = ml_collections.FieldReference(None, field_type=str)  # bundled sample data cache
    c.data.packed_dir = ml_collections.FieldReference(None, field_type=str)  # ArrayRecord shards (pack.py)

    c.train = ml_collections.ConfigDict(dict(
        batch_size=320,             # global batch (official: 40 per GPU x 8)
        epochs=100, lr_drop_epoch=80,
        lr=4e-4, backbone_lr_mult=0.1, divide_lr=4e-4,
        weight_decay=1e-4, grad_clip=0.1,
        bf16=False, shard_params=False,
        checkpoint_every_steps=1000, keep_checkpoints=3, log_every_steps=50,
        max_steps=ml_collections.FieldReference(None, field_type=int),  # cut the schedule short
        seed=0,
        eval_after=False,          # evaluate the final checkpoint on sample validation sequences
        # Without any dataset root: a short announced run on the bundled sample data.
        sample_steps=40, sample_batch_size=2,
    ))
    c.track = ml_collections.ConfigDict(dict(
        template_factor=2.0, template_size=128, search_factor=4.0, search_size=256,
        clip_margin=10,
        matmul_precision="highest",  # 'highest' = true fp32 (parity); 'default' allows TF32/bf16 passes on GPU
        # Per-benchmark division thresholds of the official test configs (0 = argmax).
        thresholds=ml_collections.ConfigDict(dict(lasot=0.4, nfs=0.6, uav123=0.55, avist=0.4, default=0.0)),
    ))
    c.eval = ml_collections.ConfigDict(dict(
        batch_sequences=8,        # sequences advanced together in one device call
        result_format="int",      # int (official %d) | float
    ))
    return c
