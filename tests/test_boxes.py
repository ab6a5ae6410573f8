"""Box math (grm_jax/boxes.py): conversions, (G)IoU vs the official numbers, tracker post-processing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FIXTURES
from grm_jax import boxes as B
from grm_jax.track.tracker import TrackParams, postprocess

TM = FIXTURES / "train_math" / "train_math.npz"
TT = FIXTURES / "track_tiny"


def test_conversions_numpy_and_jax():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 100, size=(3, 5, 4))
    for convert in (B.xywh_to_xyxy, B.cxcywh_to_xyxy):
        out = convert(b)
        assert isinstance(out, np.ndarray) and out.shape == b.shape
        jout = convert(jnp.asarray(b, jnp.float32))
        assert isinstance(jout, jax.Array)
        np.testing.assert_allclose(np.asarray(jout), out, rtol=1e-6, atol=1e-4)


def test_conversion_values():
    np.testing.assert_array_equal(B.xywh_to_xyxy([10, 20, 30, 40]), [10, 20, 40, 60])
    np.testing.assert_array_equal(B.cxcywh_to_xyxy([25, 40, 30, 40]), [10, 20, 40, 60])


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="last axis"):
        B.xywh_to_xyxy(np.zeros((3, 5)))


def test_generalized_iou_matches_official():
    d = np.load(TM)
    giou, iou = B.generalized_iou(d["giou_boxes1_xyxy"], d["giou_boxes2_xyxy"])
    assert giou.dtype == np.float32 and giou.shape == (6,)
    np.testing.assert_allclose(iou, d["giou_iou"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.mean(1 - giou), d["giou_loss"], rtol=1e-6)


def test_generalized_iou_jit_and_grad():
    d = np.load(TM)
    b1, b2 = jnp.asarray(d["giou_boxes1_xyxy"]), jnp.asarray(d["giou_boxes2_xyxy"])
    giou, iou = jax.jit(B.generalized_iou)(b1, b2)
    np.testing.assert_allclose(np.asarray(iou), d["giou_iou"], rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda a: jnp.mean(1 - B.generalized_iou(a, b2)[0]))(b1)
    assert g.shape == (6, 4) and np.all(np.isfinite(np.asarray(g)))


def test_actor_box_intermediates():
    d = np.load(TM)
    np.testing.assert_array_equal(B.cxcywh_to_xyxy(d["actor_pred_boxes_cxcywh"]).reshape(-1, 4), d["actor_pred_xyxy"])
    gt = np.clip(B.xywh_to_xyxy(d["actor_search_anno_x1y1wh"][-1]), 0, 1)
    np.testing.assert_array_equal(gt, d["actor_gt_xyxy_clamped"])


def test_iou_xywh_pixel_inclusive_and_continuous():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    b = np.array([5.0, 5.0, 10.0, 10.0])
    # continuous: overlap 5x5 = 25, union 175
    assert B.iou_xywh(a, b, pixel_inclusive=False) == pytest.approx(25 / 175)
    # pixel inclusive: br = 9 and 14, overlap (9 - 5 + 1)^2 = 25, same here
    assert B.iou_xywh(a, b, pixel_inclusive=True) == pytest.approx(25 / 175)
    c = np.array([9.5, 0.0, 10.0, 10.0])
    assert B.iou_xywh(a, c, pixel_inclusive=False) == pytest.approx(5 / 195)
    # inclusive: tl 9.5, br min(9, 18.5) = 9 -> size 0.5 * 10 = 5
    assert B.iou_xywh(a, c, pixel_inclusive=True) == pytest.approx(5 / 195)
    d = np.array([10.0, 0.0, 10.0, 10.0])
    assert B.iou_xywh(a, d, pixel_inclusive=False) == 0.0
    assert B.iou_xywh(a, d, pixel_inclusive=True) == 0.0
    e = np.array([9.0, 0.0, 10.0, 10.0])  # continuous overlap 1 col, inclusive overlap 1 pixel col
    assert B.iou_xywh(a, e, pixel_inclusive=False) == pytest.approx(10 / 190)
    assert B.iou_xywh(a, e, pixel_inclusive=True) == pytest.approx(10 / 190)
    f = np.array([0.0, 0.0, 0.0, 0.0])
    assert B.iou_xywh(f, f) == 0.0  # empty union -> 0, no warning / nan
    both = B.iou_xywh(np.stack([a, a]), np.stack([b, a]))
    np.testing.assert_allclose(both, [25 / 175, 1.0])
    j = B.iou_xywh(jnp.asarray(a), jnp.asarray(b))
    assert isinstance(j, jax.Array)


def test_center_conventions():
    np.testing.assert_array_equal(B.center_xywh([0, 0, 10, 4]), [4.5, 1.5])
    np.testing.assert_array_equal(B.center_xywh([0, 0, 10, 4], pixel_inclusive=False), [5, 2])


def test_clip_box_with_margin_cases():
    H, W = 240, 320
    np.testing.assert_array_equal(B.clip_box_with_margin([-20, -5, 50, 30], H, W), [0, 0, 30, 25])
    np.testing.assert_array_equal(B.clip_box_with_margin([315, 238, 50, 30], H, W), [310, 230, 10, 10])
    np.testing.assert_array_equal(B.clip_box_with_margin([-100, -100, 50, 50], H, W), [0, 0, 10, 10])
    np.testing.assert_array_equal(B.clip_box_with_margin([10, 20, 30, 40], H, W), [10, 20, 30, 40])
    np.testing.assert_array_equal(B.clip_box_with_margin([10, 20, 3, 4], H, W), [10, 20, 10, 10])


def test_tracker_postprocessing_reproduces_official_boxes():
    t = np.load(TT / "track_output.npz")
    H, W = np.load(TT / "frames.npz")["frames"].shape[1:3]
    for f in range(t["pred_box_crop_norm"].shape[0]):
        rf = float(t["search_resize_factors"][f])
        # the device step's float32 (box * S) / resize_factor, then the host's float64 map-back + clip
        crop_px = (t["pred_box_crop_norm"][f].astype(np.float32) * np.float32(256)) / np.float32(rf)
        box = postprocess(crop_px, t["state_in_xywh"][f], rf, (H, W), TrackParams())
        np.testing.assert_array_equal(box, t["boxes_xywh"][f + 1])
