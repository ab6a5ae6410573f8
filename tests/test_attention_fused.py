"""The fused inference attention (one dot_product_attention, boolean category mask) against the
official masked formula: same decisions and maps on the grm_tiny fixture, same boxes on the real
sequences; and the tracker's inference options (attention per backend, compute dtype)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.errors import ConfigError
from grm_jax.model import GRM
from grm_jax.model import attention as attn_lib
from helpers import track_sequences
from grm_jax.track.tracker import Tracker, step_function

@pytest.fixture(scope="module")
def official():
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
    inputs = np.load(FIXTURES / "grm_tiny" / "inputs.npz")
    nhwc = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1))
    return config, variables, nhwc(inputs["template"]), nhwc(inputs["search"])


@pytest.mark.parametrize("categories", [(1, 2), (0, 1, 2), (0, 1)])
def test_category_mask_equals_official_policy_mask(categories):
    rng = np.random.default_rng(len(categories))
    nz, nx = 4, 12
    cat_x = rng.choice(categories, size=(3, nx))
    cats = np.concatenate([np.zeros((3, nz), int), cat_x], axis=1)
    policy = jax.nn.one_hot(cats, 3)
    want = np.asarray(attn_lib.policy_mask(policy)) > 0.5
    got = np.asarray(attn_lib.category_mask(attn_lib.token_categories(policy)))
    assert got.shape == (3, 1, nz + nx, nz + nx) and got.dtype == bool
    np.testing.assert_array_equal(got[:, 0], want)

    q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (3, 2, nz + nx, 8)) for i in range(3))
    masked = attn_lib.masked_attention(q, k, v, policy)
    tokens = lambda t: t.transpose(0, 2, 1, 3)  # (B,H,N,hd) -> (B,N,H,hd)
    fused = attn_lib.fused_attention(tokens(q), tokens(k), tokens(v), jnp.asarray(got))
    np.testing.assert_allclose(np.asarray(tokens(fused)), np.asarray(masked), atol=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 0.4])
def test_fused_equals_masked_on_fixture(official, threshold):
    config, variables, template, search = official
    masked = GRM(config).apply(variables, template, search, threshold)
    fused = GRM(config.replace(attention="fused")).apply(variables, template, search, threshold)
    for a, b in zip(fused["decisions"], masked["decisions"]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for key in ("score_map", "size_map", "offset_map", "boxes"):
        np.testing.assert_allclose(np.asarray(fused[key]), np.asarray(masked[key]), rtol=0, atol=1e-5, err_msg=key)


def test_training_ignores_fused(official):
    """Training keeps the float mask product (gradients reach the division predictor)."""
    config, variables, template, search = official

    def apply(cfg):
        out, _ = GRM(cfg).apply(variables, template, search, train=True, mutable=["batch_stats"],
                                rngs={"gumbel": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)})
        return np.asarray(out["score_map"])

    np.testing.assert_array_equal(apply(config.replace(attention="fused")), apply(config))


def test_inference_attention_per_backend():
    for backend in ("cpu", "gpu", "tpu", "METAL"):
        assert attn_lib.inference_attention(backend) in ("masked", "separate", "fused")
    assert attn_lib.inference_attention() == attn_lib.inference_attention(jax.default_backend())


def test_tracker_attention_and_dtype_options(official):
    config, variables, _, _ = official
    model = GRM(config)
    default = Tracker(model, variables)
    assert default.attention == attn_lib.inference_attention()
    assert config.attention == "masked"  # the checkpoint's setting is left as saved
    assert step_function(config) is step_function(config, jnp.float32, default.attention)
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[40:80, 60:100] = 200
    boxes = {}
    for dtype in ("float32", "bfloat16"):
        t = Tracker(model, variables, dtype=dtype)
        assert t.dtype == jnp.dtype(dtype)
        t.initialize(frame, [60, 40, 40, 40])
        boxes[dtype] = t.track(frame)
    assert np.abs(boxes["bfloat16"] - boxes["float32"]).max() < 2.0
    with pytest.raises(ConfigError, match="track.dtype='float16'"):
        Tracker(model, variables, dtype="float16")
    if jax.default_backend() != "gpu":
        # the first device call (compiled untimed in initialize, so no time file holds it) refuses it
        t = Tracker(model, variables, dtype="bfloat16", attention="fused_cudnn")
        with pytest.raises(ConfigError, match="fused_cudnn' needs an NVIDIA GPU"):
            t.initialize(frame, [60, 40, 40, 40])


@pytest.mark.slow
def test_fused_boxes_match_masked_on_real_sequences(official, real_sequences):
    from grm_jax.datasets import load_benchmark

    config, variables, _, _ = official
    seqs = load_benchmark("folder", real_sequences)
    model = GRM(config)
    runs = {a: track_sequences(model, variables, seqs, None, 0.0, batch_size=len(seqs), attention=a)
            for a in ("masked", "fused")}
    for s in seqs:
        diff = np.abs(runs["fused"][s.name].boxes - runs["masked"][s.name].boxes).max(axis=1)
        within = float(np.mean(diff <= 0.5))
        print(f"{s.name}: {len(s)} frames, {within:.4f} within 0.5 px, max {diff.max():.3g} px")
        assert within >= 0.99, (s.name, within)
