"""Crop (grm_jax/crop.py) bit-exact vs the official sample_target / jittered_center_crop, and the Hann window."""
import numpy as np
import pytest

from conftest import FIXTURES
from grm_jax.crop import crop_geometry, sample_target, transform_image_to_crop
from grm_jax.track.window import hann2d

TT = FIXTURES / "track_tiny"
TM = FIXTURES / "train_math" / "train_math.npz"


@pytest.fixture(scope="module")
def crops():
    return np.load(TT / "crops.npz")


@pytest.fixture(scope="module")
def frames():
    return np.load(TT / "frames.npz")["frames"]


@pytest.fixture(scope="module")
def tm():
    return np.load(TM)


@pytest.mark.parametrize("j", range(6))
def test_sample_target_bit_exact(crops, frames, j):
    box, factor, out = crops["boxes_xywh"][j], float(crops["factors"][j]), int(crops["output_sz"][j])
    g = crop_geometry(box, factor, frames[0].shape[:2])
    assert list(g) == crops["geometry"][j].tolist()
    assert all(type(v) is int for v in g)
    crop, rf, mask = sample_target(frames[0], box, factor, out)
    assert crop.dtype == np.uint8 and crop.shape == (out, out, 3)
    assert mask.dtype == np.bool_ and mask.shape == (out, out)
    np.testing.assert_array_equal(crop, crops[f"crop_{j}"])
    np.testing.assert_array_equal(mask, crops[f"att_mask_{j}"])
    assert rf == crops["resize_factor"][j]


def test_tracker_crops_bit_exact(frames):
    t = np.load(TT / "track_output.npz")
    crop, rf, mask = sample_target(frames[0], t["boxes_xywh"][0], 2.0, 128)
    np.testing.assert_array_equal(crop, t["template_crop"])
    np.testing.assert_array_equal(mask, t["template_att_mask"])
    assert rf == t["template_resize_factor"]
    crop, rf, mask = sample_target(frames[1], t["frame1_search_box"], 4.0, 256)
    np.testing.assert_array_equal(crop, t["frame1_search_crop"])
    np.testing.assert_array_equal(mask, t["frame1_search_att_mask"])
    assert rf == t["frame1_search_resize_factor"]


@pytest.mark.parametrize("tag", ["search", "template"])
def test_jittered_center_crop_parity(tm, tag):
    factor, out = float(tm[f"jcc_{tag}_factor"]), int(tm[f"jcc_{tag}_output_sz"])
    for k in range(4):
        crop, rf, mask = sample_target(tm[f"frame_{k}"], tm["jcc_box_extract_x1y1wh"][k], factor, out)
        np.testing.assert_array_equal(crop, tm[f"jcc_{tag}_crop_{k}"])
        np.testing.assert_array_equal(mask, tm[f"jcc_{tag}_att_mask_{k}"])
        box = transform_image_to_crop(tm["jcc_box_gt_x1y1wh"][k], tm["jcc_box_extract_x1y1wh"][k], rf,
                                      np.array([out, out], np.float32), normalize=True)
        np.testing.assert_allclose(box, tm[f"jcc_{tag}_box_in_crop_x1y1wh_norm"][k], atol=1e-5, rtol=0)


def test_transform_image_to_crop_parity(tm):
    for k in range(4):
        out = transform_image_to_crop(tm["tic_box_in_x1y1wh"][k], tm["tic_box_extract_x1y1wh"][k],
                                      float(tm["tic_resize_factor"][k]), int(tm["tic_crop_sz"][k]),
                                      bool(tm["tic_normalize"][k]))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, tm["tic_out"][k], rtol=1e-6, atol=1e-5)


def test_transform_image_to_crop_batched_and_jax(tm):
    import jax.numpy as jnp

    rf = tm["tic_resize_factor"]
    out = transform_image_to_crop(tm["tic_box_in_x1y1wh"], tm["tic_box_extract_x1y1wh"], rf, 256, normalize=False)
    assert out.shape == (4, 4)
    np.testing.assert_allclose(out[0], tm["tic_out"][0], atol=1e-4)
    j = transform_image_to_crop(jnp.asarray(tm["tic_box_in_x1y1wh"]), jnp.asarray(tm["tic_box_extract_x1y1wh"]),
                                jnp.asarray(rf, jnp.float32), 256, normalize=False)
    np.testing.assert_allclose(np.asarray(j), out, atol=1e-4)


def test_crop_errors_and_edges(frames):
    with pytest.raises(ValueError, match="crop size"):
        crop_geometry([10, 10, 0.0, 0.0], 4.0, (240, 320))
    with pytest.raises(ValueError, match="4 numbers"):
        crop_geometry([10, 10, 5], 4.0, (240, 320))
    with pytest.raises(ValueError, match="non-finite"):
        sample_target(frames[0], [np.nan, 10, 5, 5], 4.0, 64)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        sample_target(frames[0, :, :, 0], [10, 10, 5, 5], 4.0, 64)
    # Round half to even: 68.5 -> 68, 18.5 -> 18 (case 5 of the fixture) and 69.5 -> 70.
    g = crop_geometry([101.0, 50.0, 21.0, 21.0], 4.0, (240, 320))
    assert (g.x1, g.y1) == (70, 18)
    # No resize: the padded square is returned as is.
    crop, rf, mask = sample_target(frames[0], [300, 220, 20, 20], 2.0, None)
    assert crop.shape == (40, 40, 3) and rf == 1.0
    assert mask[:, -1].all() and not mask[0, 0]


@pytest.mark.parametrize("n,key", [(16, "hann2d_16"), (20, "hann2d_20")])
def test_hann2d(tm, n, key):
    w = hann2d(n)
    assert w.dtype == np.float32 and w.shape == (n, n)
    np.testing.assert_allclose(w, tm[key][0, 0], atol=1e-7, rtol=0)


def test_hann2d_tracker_window():
    t = np.load(TT / "track_output.npz")
    np.testing.assert_allclose(hann2d(16), t["frame1_hann_window"][0, 0], atol=1e-7, rtol=0)
    with pytest.raises(ValueError):
        hann2d(0)


@pytest.mark.parametrize("channels,dtype", [(3, np.uint8), (1, np.uint8), (4, np.uint8), (3, np.float32), (3, np.uint16)])
def test_sample_target_of_a_reversed_view_equals_a_flipped_copy(channels, dtype):
    """Crops of a horizontally reversed view (the training's joint flip; copied row-wise and mirrored
    with cv2.flip) equal, bit for bit, the crops of a contiguous flipped copy, padding on every side."""
    rng = np.random.default_rng(channels)
    image = rng.integers(0, 256, (90, 131, channels)).astype(dtype)
    view, copy = image[:, ::-1, :], np.ascontiguousarray(image[:, ::-1, :])
    for _ in range(25):
        box = [rng.uniform(-30, 140), rng.uniform(-30, 100), rng.uniform(4, 60), rng.uniform(4, 60)]
        factor, out = float(rng.choice([2.0, 4.0, 5.0])), int(rng.choice([64, 128]))
        a_crop, a_rf, a_att = sample_target(view, box, factor, out)
        b_crop, b_rf, b_att = sample_target(copy, box, factor, out)
        assert a_crop.dtype == b_crop.dtype and a_rf == b_rf
        np.testing.assert_array_equal(a_crop, b_crop)
        np.testing.assert_array_equal(a_att, b_att)
