"""Jittered crops vs the official code (train_math jcc_*), jitter and augmentation behaviour."""
import numpy as np
import pytest

from data_pipelines.processing import CropSpec, PairProcessor, apply_jitter, jitter_noise, jittered_center_crop
from grm_jax.crop import IMAGENET_MEAN as MEAN, IMAGENET_STD as STD


@pytest.fixture(scope="module")
def tm(fixtures_dir):
    return dict(np.load(fixtures_dir / "train_math" / "train_math.npz"))


@pytest.mark.parametrize("tag", ["search", "template"])
def test_jittered_center_crop_matches_official(tm, tag):
    frames = [tm[f"frame_{k}"] for k in range(4)]
    crops, boxes, masks = jittered_center_crop(frames, tm["jcc_box_extract_x1y1wh"], tm["jcc_box_gt_x1y1wh"],
                                               float(tm[f"jcc_{tag}_factor"]), int(tm[f"jcc_{tag}_output_sz"]))
    for k in range(4):
        np.testing.assert_array_equal(crops[k], tm[f"jcc_{tag}_crop_{k}"])
        np.testing.assert_array_equal(masks[k], tm[f"jcc_{tag}_att_mask_{k}"])
    np.testing.assert_allclose(boxes, tm[f"jcc_{tag}_box_in_crop_x1y1wh_norm"], atol=1e-5, rtol=0)


def jitter_box(box, center_jitter, scale_jitter, rng):
    """The official ``_get_jittered_box`` (float32): one draw of noise, then the jitter."""
    return apply_jitter(box, jitter_noise(rng), center_jitter, scale_jitter)


def test_jitter_box_statistics():
    rng = np.random.default_rng(0)
    box = np.array([100.0, 50.0, 40.0, 20.0], np.float32)
    assert np.array_equal(jitter_box(box, 0.0, 0.0, rng), box)
    js = np.stack([jitter_box(box, 3.0, 0.25, rng) for _ in range(4000)])
    logs = np.log(js[:, 2:] / box[2:])
    assert abs(logs.mean()) < 0.02 and abs(logs.std() - 0.25) < 0.02
    c = js[:, :2] + js[:, 2:] / 2 - (box[:2] + box[2:] / 2)
    lim = np.sqrt(js[:, 2] * js[:, 3]) * 3.0 / 2 + 1e-3
    assert np.all(np.abs(c[:, 0]) <= lim) and np.all(np.abs(c[:, 1]) <= lim)


def _processor():
    return PairProcessor(CropSpec(2.0, 128, 0.0, 0.0), CropSpec(4.0, 256, 3.0, 0.25))


def test_processor_shapes_and_ranges():
    rng = np.random.default_rng(1)
    img_t = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    img_s = rng.integers(0, 256, (130, 170, 3), dtype=np.uint8)
    proc = _processor()
    lo = (0 - np.asarray(MEAN)) / np.asarray(STD)
    hi = (1 - np.asarray(MEAN)) / np.asarray(STD)
    n_ok = 0
    for _ in range(30):
        out = proc(img_t, [50, 40, 30, 25], img_s, [60, 45, 28, 30], rng)
        if out is None:
            continue
        n_ok += 1
        assert out["template"].shape == (128, 128, 3) and out["template"].dtype == np.float32
        assert out["search"].shape == (256, 256, 3) and out["search"].dtype == np.float32
        assert out["template_att"].shape == (128, 128) and out["template_att"].dtype == bool
        assert out["search_att"].shape == (256, 256)
        assert out["heatmap"].shape == (16, 16) and out["heatmap"].dtype == np.float32
        assert out["search_box"].shape == (4,) and out["search_box"].dtype == np.float32
        for k in ("template", "search"):
            assert np.all(out[k] >= lo - 1e-5) and np.all(out[k] <= hi + 1e-5)
        assert out["heatmap"].max() == pytest.approx(1.0)
        # template: no jitter -> the box centre sits at the crop centre (127/2 px; mirrored
        # to 1 - 127/256 by the normalized flip)
        tb = out["template_box"]
        c = 0.5 * 127 / 128
        assert np.isclose(tb[0] + tb[2] / 2, c, atol=1e-5) or np.isclose(tb[0] + tb[2] / 2, 1 - c, atol=1e-5)
        assert np.isclose(tb[1] + tb[3] / 2, c, atol=1e-5)
    assert n_ok >= 25


def test_processor_is_deterministic_and_rejects_all_padding():
    img = np.full((100, 100, 3), 200, np.uint8)
    proc = _processor()
    a = proc(img, [30, 30, 20, 20], img, [35, 30, 20, 20], np.random.default_rng(5))
    b = proc(img, [30, 30, 20, 20], img, [35, 30, 20, 20], np.random.default_rng(5))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # a box far outside the image: the crop is all padding -> rejected
    far = PairProcessor(CropSpec(2.0, 128, 0.0, 0.0), CropSpec(4.0, 256, 0.0, 0.0))
    assert far(img, [30, 30, 20, 20], img, [5000, 5000, 10, 10], np.random.default_rng(0)) is None


def test_flips_keep_box_on_object():
    """The object (a bright square) stays under the output box whatever flips are drawn."""
    img = np.zeros((120, 160, 3), np.uint8)
    img[40:70, 90:120] = 255
    box = [90, 40, 30, 30]
    proc = PairProcessor(CropSpec(2.0, 128, 0.0, 0.0), CropSpec(4.0, 256, 0.0, 0.0), grayscale_prob=0.0)
    rng = np.random.default_rng(3)
    for _ in range(12):
        out = proc(img, box, img, box, rng)
        for k, s in (("template", 128), ("search", 256)):
            x, y, w, h = out[f"{k}_box"] * s
            cx, cy = int(x + w / 2), int(y + h / 2)
            assert out[k][cy, cx].mean() > 1.0  # bright (normalized white ~ +2)
            assert out[k][cy, max(int(x) - 6, 0)].mean() < 0  # dark left of the box


def test_joint_flip_crops_equal_a_flipped_copy():
    """The joint horizontal flip reads the crops from a reversed view of the frame (no full-frame copy):
    every output equals, bit for bit, the processor fed frames that were flipped beforehand, with
    the joint flip drawn off and the boxes mirrored by hand."""
    rng = np.random.default_rng(7)
    img_t = rng.integers(0, 256, (90, 140, 3), dtype=np.uint8)
    img_s = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    box_t, box_s = np.array([50, 30, 30, 25], np.float32), np.array([60, 35, 28, 30], np.float32)

    def mirrored(box, width):
        return np.array([(width - 1) - (box[0] + box[2]), box[1], box[2], box[3]], np.float32)

    flips = 0
    for seed in range(12):
        proc = PairProcessor(CropSpec(2.0, 128, 0.0, 0.0), CropSpec(4.0, 256, 3.0, 0.25), grayscale_prob=0.0,
                             flip_prob=0.5)
        draws = np.random.default_rng(seed)
        draws.random()  # the grayscale roll
        if not draws.random() < 0.5:
            continue
        flips += 1
        out = proc(img_t, box_t, img_s, box_s, np.random.default_rng(seed))
        rolls = _RollsWithoutJointFlip(seed)
        ref = PairProcessor(CropSpec(2.0, 128, 0.0, 0.0), CropSpec(4.0, 256, 3.0, 0.25), grayscale_prob=0.0,
                            flip_prob=0.5)(np.ascontiguousarray(img_t[:, ::-1]), mirrored(box_t, 140),
                                           np.ascontiguousarray(img_s[:, ::-1]), mirrored(box_s, 150), rolls)
        assert (out is None) == (ref is None)
        for k in out or {}:
            np.testing.assert_array_equal(out[k], ref[k], err_msg=k)
    assert flips >= 3


class _RollsWithoutJointFlip:
    """The generator of ``seed`` whose second ``random()`` (the joint flip roll) says 'no flip'."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)
        self._randoms = 0

    def random(self, *a, **kw):
        self._randoms += 1
        value = self._rng.random(*a, **kw)
        return 1.0 if self._randoms == 2 else value

    def __getattr__(self, name):
        return getattr(self._rng, name)


def test_per_image_steps_in_place_equal_the_stepwise_formula():
    """Brightness, second flip and normalisation run in place on a flipped uint8 crop: the same float32
    values as clip(crop * b / 255, 0, 1), flipped, minus mean, over std, step by step."""
    proc = _processor()
    crop = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    att = np.zeros((64, 64), bool)
    att[:, :5] = True
    box = np.array([0.2, 0.3, 0.25, 0.4], np.float32)
    flipped = 0
    for seed in range(8):
        img, out_box, out_att = proc._per_image(crop, box, att, np.random.default_rng(seed))
        draws = np.random.default_rng(seed)
        bf = draws.uniform(0.8, 1.2)
        ref = np.clip(crop.astype(np.float32) * np.float32(bf / 255.0), 0.0, 1.0)
        ref_att, ref_box = att, box
        if draws.random() < 0.5:
            flipped += 1
            ref, ref_att = ref[:, ::-1, :], att[:, ::-1]
            ref_box = np.array([1 - box[0] - box[2], box[1], box[2], box[3]], np.float32)
        ref = (ref - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
        assert img.dtype == np.float32 and img.flags.c_contiguous and out_att.flags.c_contiguous
        np.testing.assert_array_equal(img, ref)
        np.testing.assert_array_equal(out_att, ref_att)
        np.testing.assert_allclose(out_box, ref_box, atol=1e-7)
    assert 0 < flipped < 8
