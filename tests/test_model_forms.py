"""Training-mode division, degenerate relation forms, separate vs masked attention, ablation switches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.model import GRM, ModelConfig
from grm_jax.model import attention as attn_lib
from models import MICRO

GRM_PTH = FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"


@pytest.fixture(scope="module")
def official():
    config, variables = convert_grm_checkpoint(str(GRM_PTH))
    inputs = np.load(FIXTURES / "grm_tiny" / "inputs.npz")
    nhwc = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1))
    return config, variables, nhwc(inputs["template"]), nhwc(inputs["search"])


def _eager_init(model):
    """Random variables of ``model`` as ``grm_jax.model.init_variables`` makes them, but initialized op
    by op: the small models below share their compiled ops, where each jitted init compiles alone."""
    cfg = model.config
    zeros = lambda size: jnp.zeros((1, size, size, 3), jnp.float32)  # noqa: E731
    return model.init({"params": jax.random.PRNGKey(0)}, zeros(cfg.template_size), zeros(cfg.search_size))


def _train_apply(model, variables, template, search, seed=0):
    return model.apply(variables, template, search, train=True, mutable=["batch_stats"],
                       rngs={"gumbel": jax.random.PRNGKey(seed), "dropout": jax.random.PRNGKey(seed + 1)})


@pytest.mark.slow
def test_gradient_reaches_every_division_predictor(official):
    config, variables, template, search = official
    model = GRM(config)
    weights = jax.random.normal(jax.random.PRNGKey(3), (2, 16, 16, 1))

    def loss(params):
        out, _ = _train_apply(model, {**variables, "params": params}, template, search)
        return jnp.sum(out["score_map"] * weights) + jnp.sum(out["boxes"])

    grads = jax.jit(jax.grad(loss))(variables["params"])  # one compile (op by op: every op alone)
    for i in config.divide_layers:
        g = grads["backbone"][f"blocks_{i}"]["attn"]["divide_predict"]
        for layer in ("fc0", "fc1", "fc2"):
            norm = float(jnp.linalg.norm(g[layer]["kernel"]))
            assert norm > 0 and np.isfinite(norm), (i, layer, norm)


def test_training_decisions_are_one_hot_and_stochastic(official):
    config, variables, template, search = official
    model = GRM(config)
    out_a, _ = _train_apply(model, variables, template, search, seed=0)
    out_b, _ = _train_apply(model, variables, template, search, seed=7)
    for hard in out_a["hard_decisions"]:
        hard = np.asarray(hard)
        assert set(np.unique(hard)) <= {0.0, 1.0}
        np.testing.assert_array_equal(hard.sum(-1), 1.0)
    assert any(not np.array_equal(a, b) for a, b in zip(out_a["decisions"], out_b["decisions"]))


@pytest.mark.slow
def test_training_updates_batch_stats(official):
    config, variables, template, search = official
    _, updates = _train_apply(GRM(config), variables, template, search)
    old = variables["batch_stats"]["box_head"]["ctr"]["bn1"]["mean"]
    new = updates["batch_stats"]["box_head"]["ctr"]["bn1"]["mean"]
    assert not np.allclose(old, new)


def test_inference_is_deterministic(official):
    config, variables, template, search = official
    model = GRM(config)
    fn = jax.jit(lambda v, t, s: model.apply(v, t, s, 0.4))
    a, b = fn(variables, template, search), model.apply(variables, template, search, 0.4)
    np.testing.assert_array_equal(np.asarray(a["score_map"]), np.asarray(fn(variables, template, search)["score_map"]))
    np.testing.assert_allclose(np.asarray(a["score_map"]), np.asarray(b["score_map"]), atol=1e-6)
    for x, y in zip(a["decisions"], b["decisions"]):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_all_tokens_in_EA_equals_full_attention(official):
    """threshold > 1 puts every search token in E_A: same as the one-stream (OSTrack) form."""
    config, variables, template, search = official
    out = GRM(config).apply(variables, template, search, 1.5)
    assert all(np.all(np.asarray(d) == 1) for d in out["decisions"])
    one_stream = GRM(config.replace(relation="one_stream")).apply(variables, template, search)
    np.testing.assert_allclose(np.asarray(out["score_map"]), np.asarray(one_stream["score_map"]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["backbone_tokens"]), np.asarray(one_stream["backbone_tokens"]),
                               atol=2e-5)


def _qkv(seed, b=2, h=3, n=20, hd=8, scale=0.5):
    """Moderate logits: with the official eps-softmax, a masked key holding the row max
    shrinks the allowed row sum and so scales up the eps/N leak (faithful behaviour)."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return [scale * jax.random.normal(k, (b, h, n, hd)) for k in (k1, k2, k3)]


def _policy(ea_search, nz=4):
    b, nx = ea_search.shape
    search = jnp.stack([jnp.zeros_like(ea_search), 1 - ea_search, ea_search], -1)
    template = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), (b, nz, 3))
    return jnp.concatenate([template, search], 1)


def test_masked_attention_all_EA_equals_plain_softmax():
    q, k, v = _qkv(0)
    policy = _policy(jnp.ones((2, 16)))
    np.testing.assert_allclose(np.asarray(attn_lib.masked_attention(q, k, v, policy)),
                               np.asarray(attn_lib.full_attention(q, k, v)), atol=1e-5)


@pytest.mark.parametrize("impl", ["masked", "separate"])
def test_all_tokens_in_ES_block_template_from_search(impl):
    """Two-stream degenerate form: search outputs do not depend on template keys/values."""
    q, k, v = _qkv(1)
    policy = _policy(jnp.zeros((2, 16)))
    k2 = k.at[:, :, :4].set(k[:, :, :4] * 3 + 1)
    v2 = v.at[:, :, :4].set(-v[:, :, :4] + 5)

    def run(kk, vv):
        if impl == "masked":
            return attn_lib.masked_attention(q, kk, vv, policy)
        return attn_lib.separate_attention(q, kk, vv, policy, 4, (1, 2))

    a, b = np.asarray(run(k, v))[:, :, 4:], np.asarray(run(k2, v2))[:, :, 4:]
    if impl == "separate":
        np.testing.assert_array_equal(a, b)  # exact: no key of the template is visible
    else:
        np.testing.assert_allclose(a, b, atol=1e-5)  # only the official eps/N leak remains


@pytest.mark.slow
def test_two_stream_model_keeps_search_independent_of_template():
    config = MICRO.replace(relation="two_stream", divide_layers=(0, 1, 2), attention="separate")
    model = GRM(config)
    variables = _eager_init(model)
    t, s = config.template_size, config.search_size
    search = jax.random.normal(jax.random.PRNGKey(1), (1, s, s, 3))
    t1 = jax.random.normal(jax.random.PRNGKey(2), (1, t, t, 3))
    out1 = model.apply(variables, t1, search)
    out2 = model.apply(variables, t1 * -2.0 + 1.0, search)
    np.testing.assert_allclose(np.asarray(out1["score_map"]), np.asarray(out2["score_map"]), atol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.4])
def test_separate_attention_equals_masked(official, threshold):
    config, variables, template, search = official
    masked = GRM(config).apply(variables, template, search, threshold)
    separate = GRM(config.replace(attention="separate")).apply(variables, template, search, threshold)
    for key in ("score_map", "size_map", "offset_map", "boxes"):
        np.testing.assert_allclose(np.asarray(separate[key]), np.asarray(masked[key]), atol=1e-5, err_msg=key)
    np.testing.assert_allclose(np.asarray(separate["backbone_tokens"]), np.asarray(masked["backbone_tokens"]),
                               atol=2e-5)
    for a, b in zip(separate["decisions"], masked["decisions"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


ABLATIONS = [("grm", ()), ("grm", (0, 1, 2, 3)), ("grm", (2, 3)), ("grm", (1, 2, 3)),  # Table 5
             ("one_stream", (1, 2, 3)), ("two_stream", (1, 2, 3)), ("ts", (1, 2, 3)),   # Table 4
             ("tsa", (1, 2, 3))]


@pytest.mark.parametrize("relation,divide_layers", ABLATIONS)
@pytest.mark.slow
def test_every_ablation_form_trains_and_infers(relation, divide_layers):
    """Paper Table 4 (relation forms) x Table 5 (dividing layers: none, 1-12, 5-12, 2-12 analogues)."""
    config = MICRO.replace(depth=4, relation=relation, divide_layers=divide_layers,
                           template_agg="mean" if relation == "ts" else "max")
    model = GRM(config)
    variables = _eager_init(model)
    t = jax.random.normal(jax.random.PRNGKey(1), (2, config.template_size, config.template_size, 3))
    s = jax.random.normal(jax.random.PRNGKey(2), (2, config.search_size, config.search_size, 3))
    out = model.apply(variables, t, s, 0.4)
    side = config.search_size // config.patch_size
    assert out["score_map"].shape == (2, side, side, 1) and out["boxes"].shape == (2, 4)
    assert len(out["decisions"]) == len(divide_layers)
    has_predictor = any("divide_predict" in variables["params"]["backbone"][f"blocks_{i}"]["attn"]
                        for i in range(4))
    assert has_predictor == (relation in ("grm", "ts", "tsa") and bool(divide_layers))
    out_train, _ = _train_apply(model, variables, t, s)
    assert np.all(np.isfinite(np.asarray(out_train["score_map"])))


def test_config_validation():
    with pytest.raises(ValueError, match="num_heads=5 does not divide embed_dim=192"):
        ModelConfig(embed_dim=192, num_heads=5)
    with pytest.raises(ValueError, match="relation"):
        ModelConfig(relation="three_stream")
    with pytest.raises(ValueError, match="divide_layers"):
        ModelConfig(depth=4, divide_layers=(5,))
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"embed_dim": 192, "num_heads": 3, "colour": "red"})
