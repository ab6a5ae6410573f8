"""GRM optimizer: three LR groups, step decay, torch-style global-norm clipping before AdamW."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grm_jax.run_config import TrainConfig
from grm_jax.train import optimizer as opt_lib


def _params():
    blk = {"attn": {"qkv": {"kernel": jnp.ones((4, 12)), "bias": jnp.ones((12,))},
                    "divide_predict": {"fc0": {"kernel": jnp.ones((8, 3))}}},
           "mlp": {"fc1": {"kernel": jnp.ones((4, 4))}}}
    return {"backbone": {"blocks_0": {"attn": {"qkv": {"kernel": jnp.ones((4, 12))}}}, "blocks_1": blk,
                         "pos_embed_x": jnp.ones((1, 4, 4))},
            "box_head": {"ctr": {"conv0": {"kernel": jnp.ones((3, 3, 4, 2)), "bias": jnp.ones((2,))}}}}


def test_param_groups_by_path():
    labels = opt_lib.param_labels(_params())
    assert labels["box_head"]["ctr"]["conv0"]["kernel"] == "head"
    assert labels["backbone"]["pos_embed_x"] == "backbone"
    assert labels["backbone"]["blocks_1"]["attn"]["qkv"]["bias"] == "backbone"
    assert labels["backbone"]["blocks_1"]["mlp"]["fc1"]["kernel"] == "backbone"
    assert labels["backbone"]["blocks_1"]["attn"]["divide_predict"]["fc0"]["kernel"] == "divide"


def test_group_lrs_and_step_decay():
    train = TrainConfig(lr=4e-4, backbone_lr_mult=0.1, divide_lr=4e-4, lr_drop_epoch=3)
    _, lr_fn = opt_lib.make_optimizer(train, steps_per_epoch=5)
    for step, scale in ((0, 1.0), (14, 1.0), (15, 0.1), (29, 0.1), (30, 0.01)):
        lrs = {k: float(v) for k, v in lr_fn(step).items()}
        np.testing.assert_allclose(lrs["head"], 4e-4 * scale, rtol=1e-6)
        np.testing.assert_allclose(lrs["backbone"], 4e-5 * scale, rtol=1e-6)
        np.testing.assert_allclose(lrs["divide"], 4e-4 * scale, rtol=1e-6)


def test_warmup_scales_every_group_then_leaves_the_step_decay():
    train = TrainConfig(lr=4e-4, backbone_lr_mult=0.1, divide_lr=2e-4, lr_drop_epoch=3, warmup_steps=4)
    _, lr_fn = opt_lib.make_optimizer(train, steps_per_epoch=5)
    for step, scale in ((0, 0.25), (1, 0.5), (3, 1.0), (14, 1.0), (15, 0.1)):
        lrs = {k: float(v) for k, v in lr_fn(step).items()}
        np.testing.assert_allclose([lrs["head"], lrs["backbone"], lrs["divide"]],
                                   np.array([4e-4, 4e-5, 2e-4]) * scale, rtol=1e-6)


def _adamw_first_step(g, p, lr, wd, eps=1e-8):
    # torch AdamW step 1: p -= lr*wd*p; m_hat = g; v_hat = g^2; p -= lr * g / (|g| + eps)
    return p * (1 - lr * wd) - lr * g / (np.abs(g) + eps)


def test_update_matches_torch_adamw_per_group_with_clipping():
    params = _params()
    train = TrainConfig(weight_decay=1e-4, grad_clip=0.1, lr_drop_epoch=10)
    tx, _ = opt_lib.make_optimizer(train, steps_per_epoch=10)
    rng = np.random.default_rng(0)
    grads = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)

    @jax.jit  # one compile (op by op, each of optax's many small ops compiles alone)
    def step(grads, params):
        updates, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, updates)

    new = step(grads, params)
    norm = float(optax.tree.norm(grads))
    coef = min(1.0, 0.1 / (norm + 1e-6))
    assert coef < 1.0  # clipping is active in this example
    lrs = opt_lib.base_lrs(train)
    labels = opt_lib.param_labels(params)
    for (path, p), g, n, lab in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree_util.tree_leaves(grads),
                                    jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(labels)):
        want = _adamw_first_step(np.asarray(g) * coef, np.asarray(p), lrs[lab], 1e-4)
        np.testing.assert_allclose(np.asarray(n), want, rtol=1e-6, atol=1e-9, err_msg=jax.tree_util.keystr(path))


def test_clip_is_global_and_torch_formula():
    clip = opt_lib.clip_by_global_norm_torch(1.0)
    g = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}  # global norm 5
    out, _ = clip.update(g, clip.init(g))
    np.testing.assert_allclose(np.asarray(out["a"]), [3.0 / (5 + 1e-6), 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["b"]), [4.0 / (5 + 1e-6)], rtol=1e-6)
    small = {"a": jnp.array([0.3, 0.0]), "b": jnp.array([0.4])}  # norm 0.5 < 1: untouched
    out, _ = clip.update(small, clip.init(small))
    np.testing.assert_array_equal(np.asarray(out["a"]), np.asarray(small["a"]))


def test_clipping_happens_before_adamw():
    # With clipping first, Adam's first step is sign-like whatever the scale; weight decay uses the LR.
    params = {"box_head": {"w": jnp.array([1.0, -2.0])}}
    tx, _ = opt_lib.make_optimizer(TrainConfig(lr=1e-2, weight_decay=0.5, grad_clip=1e-3))
    grads = {"box_head": {"w": jnp.array([100.0, -100.0])}}
    upd, _ = tx.update(grads, tx.init(params), params)
    new = np.asarray(optax.apply_updates(params, upd)["box_head"]["w"])
    np.testing.assert_allclose(new, [1.0 * (1 - 5e-3) - 1e-2, -2.0 * (1 - 5e-3) + 1e-2], rtol=1e-5)


def test_groups_from_config():
    from grm_jax.configuration import load_run_config

    run = load_run_config("grm_got")
    assert opt_lib.base_lrs(run.train) == pytest.approx({"head": 4e-4, "backbone": 4e-5, "divide": 4e-4})
