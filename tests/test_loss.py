"""Parity of the training math with the official code (fixture train_math) + jit/grad sanity."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines.processing import gaussian_radius, generate_heatmap, heatmap_centers
from grm_jax.model.head import decode_boxes
from grm_jax.train.loss import compute_losses, focal_loss, giou_l1_losses


@pytest.fixture(scope="module")
def tm(fixtures_dir):
    return dict(np.load(fixtures_dir / "train_math" / "train_math.npz"))


def _rel(a, b):
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-12)


def test_heatmap_radius_and_centers_exact(tm):
    boxes = tm["heatmap_boxes_x1y1wh"]
    centers, wh = heatmap_centers(boxes, 16)
    np.testing.assert_array_equal(centers, tm["heatmap_centers_int"])
    r = gaussian_radius(wh)
    np.testing.assert_allclose(r, tm["heatmap_radius_float"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.maximum(r, 0).astype(np.int32), tm["heatmap_radius_int"])


def test_heatmaps_match(tm):
    hm = generate_heatmap(tm["heatmap_boxes_x1y1wh"], 256, 16)
    assert hm.shape == (8, 16, 16) and hm.dtype == np.float32
    np.testing.assert_allclose(hm, tm["heatmaps"], atol=1e-6, rtol=0)
    assert not hm[5].any()  # centre x = 16: off the grid
    hm_actor = generate_heatmap(tm["actor_search_anno_x1y1wh"][-1], 256, 16)
    np.testing.assert_allclose(hm_actor, tm["actor_gt_heatmap"][:, 0], atol=1e-6, rtol=0)


def test_focal_loss(tm):
    pred = jnp.asarray(tm["focal_pred"][:, 0])
    assert _rel(focal_loss(pred, jnp.asarray(tm["focal_gt"][:, 0])), tm["focal_loss"]) < 1e-5
    assert _rel(focal_loss(pred, jnp.asarray(tm["focal_gt_nopos"][:, 0])), tm["focal_loss_nopos"]) < 1e-5
    assert int(np.sum(tm["focal_gt"] == 1)) == int(tm["focal_num_pos"])


def test_giou_and_l1(tm):
    g, l1, miou = giou_l1_losses(jnp.asarray(tm["giou_boxes1_xyxy"]), jnp.asarray(tm["giou_boxes2_xyxy"]))
    assert _rel(g, tm["giou_loss"]) < 1e-5
    assert _rel(l1, tm["l1_loss"]) < 1e-5
    assert _rel(miou, tm["giou_iou"].mean()) < 1e-5


def _nhwc(score_nchw):
    return jnp.asarray(np.transpose(score_nchw, (0, 2, 3, 1)))


@pytest.mark.parametrize("bad", [False, True])
def test_actor_losses(tm, bad):
    pfx = "actor_bad_" if bad else "actor_"
    pred = tm["actor_bad_pred_boxes_cxcywh" if bad else "actor_pred_boxes_cxcywh"]
    gt = tm["actor_search_anno_x1y1wh"][-1]
    hm = generate_heatmap(gt, 256, 16)
    fn = jax.jit(compute_losses)
    total, m = fn(jnp.asarray(pred), _nhwc(tm["actor_score_map"]), jnp.asarray(gt), jnp.asarray(hm))
    exp_total = tm[pfx + "total_loss"]
    assert _rel(total, exp_total) < 1e-5
    assert _rel(m["focal"], tm[pfx + "focal"]) < 1e-5
    assert _rel(m["l1"], tm[pfx + "l1"]) < 1e-5
    if bad:
        assert float(m["giou"]) == 0.0 and float(m["iou"]) == 0.0
    else:
        assert _rel(m["giou"], tm["actor_giou"]) < 1e-5
        assert _rel(m["iou"], tm["actor_mean_iou"]) < 1e-5


def test_loss_grad_finite(tm):
    gt = tm["actor_search_anno_x1y1wh"][-1]
    hm = jnp.asarray(generate_heatmap(gt, 256, 16))
    score = _nhwc(tm["actor_score_map"])

    for key in ("actor_pred_boxes_cxcywh", "actor_bad_pred_boxes_cxcywh"):
        def f(p, s):
            return compute_losses(p, s, jnp.asarray(gt), hm)[0]

        gp, gs = jax.jit(jax.grad(f, argnums=(0, 1)))(jnp.asarray(tm[key]), score)
        assert np.all(np.isfinite(gp)) and np.all(np.isfinite(gs))
        assert np.any(gp != 0)


def test_boxes_decoded_at_raw_score_peak():
    # the training loss uses the network's boxes: decode_boxes at the first maximum of the raw score
    rng = np.random.default_rng(0)
    b, h, w = 3, 16, 16
    score = rng.random((b, h, w, 1)).astype(np.float32)
    score[1, 4, 9, 0] = 5.0
    score[2, 0, 0, 0] = 7.0
    score[2, 3, 3, 0] = 7.0  # tie -> first (lowest flat index)
    size = rng.random((b, h, w, 2)).astype(np.float32)
    off = rng.random((b, h, w, 2)).astype(np.float32)
    out = np.asarray(jax.jit(decode_boxes)(score, size, off))
    for i in range(b):
        idx = int(np.argmax(score[i, ..., 0].reshape(-1)))
        iy, ix = divmod(idx, w)
        exp = [(ix + off[i, iy, ix, 0]) / w, (iy + off[i, iy, ix, 1]) / h, size[i, iy, ix, 0], size[i, iy, ix, 1]]
        np.testing.assert_allclose(out[i], exp, rtol=1e-6)
    assert np.allclose(out[2, :2], [off[2, 0, 0, 0] / w, off[2, 0, 0, 1] / h])
