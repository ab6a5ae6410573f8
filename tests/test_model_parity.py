"""Converted official grm_tiny checkpoint reproduces the official PyTorch outputs (fp32, CPU).

Tolerances: maps and boxes 1e-5 absolute, backbone tokens 2e-5, decisions identical.
(A tanh-GELU or a LayerNorm-eps mistake still passes 1e-4, so 1e-4 would be too loose.)
"""
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.model import GRM
from grm_jax.model.attention import masked_softmax, policy_mask

GRM_TINY = FIXTURES / "grm_tiny"


@pytest.fixture(scope="module")
def tiny():
    config, variables = convert_grm_checkpoint(str(GRM_TINY / "GRM_ep0001.pth.tar"))
    inputs = np.load(GRM_TINY / "inputs.npz")
    nhwc = lambda a: a.transpose(0, 2, 3, 1)
    return GRM(config), variables, nhwc(inputs["template"]), nhwc(inputs["search"])


@pytest.mark.parametrize("threshold,golden", [(0.0, "outputs_thr0.npz"), (0.4, "outputs_thr0p4.npz")])
def test_outputs_match_official(tiny, threshold, golden):
    model, variables, template, search = tiny
    want = np.load(GRM_TINY / golden)
    out = model.apply(variables, template, search, threshold)
    nchw = lambda a: np.asarray(a).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(nchw(out["score_map"]), want["score_map"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(nchw(out["size_map"]), want["size_map"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(nchw(out["offset_map"]), want["offset_map"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["boxes"]), want["pred_boxes"][:, 0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["backbone_tokens"]), want["backbone_tokens"], rtol=0, atol=2e-5)
    assert len(out["decisions"]) == 3
    for layer, decision in enumerate(out["decisions"], start=1):
        np.testing.assert_array_equal(np.asarray(decision), want[f"decision_layer{layer}"][..., 1])
        np.testing.assert_allclose(np.asarray(out["log_probs"][layer - 1]), want[f"divide_logprob_layer{layer}"],
                                   rtol=0, atol=5e-5)


def test_attention_mask_and_softmax_match_official():
    rec = np.load(GRM_TINY / "attn_policy_layer1.npz")
    mask = np.asarray(policy_mask(rec["policy"][None]))[0]
    np.testing.assert_array_equal(mask, rec["attn_policy"])
    probs = np.asarray(masked_softmax(rec["attn_logits_head0"][None, None], rec["attn_policy"][None]))[0, 0]
    np.testing.assert_allclose(probs, rec["attn_probs_head0"], rtol=1e-5, atol=1e-9)


def test_policy_recorded_matches_our_decisions(tiny):
    model, variables, template, search = tiny
    rec = np.load(GRM_TINY / "attn_policy_layer1.npz")
    out = model.apply(variables, template, search, float(rec["threshold"]))
    ea = np.asarray(out["decisions"][int(rec["layer"]) - 1])[int(rec["sample"])]
    np.testing.assert_array_equal(ea, rec["policy"][64:, 2])
