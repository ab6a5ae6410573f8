"""Metrics (grm_jax/evaluate/metrics.py): hand-computed pytracking-style and GOT-10k cases."""
import numpy as np
import pytest

from grm_jax.evaluate import metrics as M


def _gt(n=5):
    return np.array([[10.0 + i, 20.0, 40.0, 30.0] for i in range(n)])


def test_thresholds():
    assert M.OVERLAP_THRESHOLDS.shape == (21,) and M.OVERLAP_THRESHOLDS[10] == 0.5
    assert M.OVERLAP_THRESHOLDS[15] == pytest.approx(0.75) and M.OVERLAP_THRESHOLDS[-1] == pytest.approx(1.0)
    assert M.CENTER_THRESHOLDS[20] == 20 and M.NORM_CENTER_THRESHOLDS[20] == pytest.approx(0.2)
    assert M.GOT10K_THRESHOLDS.shape == (101,)


def test_perfect_tracker():
    gt = _gt(8)
    r = M.evaluate_sequence(gt, gt, name="perfect")
    agg = M.aggregate([r])
    # Strict '>' at t = 1.0 fails even for IoU 1, so a perfect AUC is 20/21.
    assert agg["auc"] == pytest.approx(100 * 20 / 21)
    for k in ("precision", "norm_precision", "op50", "op75"):
        assert agg[k] == pytest.approx(100.0)
    assert agg["per_sequence"]["perfect"]["op75"] == pytest.approx(100.0)


def test_first_frame_replaced_by_gt():
    gt = _gt(4)
    pred = gt.copy()
    pred[0] = [500, 500, 3, 3]
    err = M.sequence_errors(pred, gt)
    assert err["overlap"][0] == pytest.approx(1.0)
    np.testing.assert_array_equal(err["pred_xywh"][0], gt[0])


def test_zero_size_prediction_uses_previous():
    gt = _gt(5)
    pred = gt.copy()
    pred[2] = [0, 0, 0, 10]  # zero width -> replaced by pred[1]
    pred[3] = [0, 0, 5, 0]  # zero height -> replaced by (replaced) pred[2] == pred[1]
    err = M.sequence_errors(pred, gt)
    np.testing.assert_array_equal(err["pred_xywh"][2], gt[1])
    np.testing.assert_array_equal(err["pred_xywh"][3], gt[1])
    # gt[1] vs gt[2]: shift of 1 px on a 40 px wide box -> IoU 39*30 / (2*1200 - 39*30)
    assert err["overlap"][2] == pytest.approx(1170 / 1230)


def test_absent_frames_and_denominators():
    gt = _gt(5)
    gt[3, 2] = 0.0  # target absent (w = 0)
    pred = _gt(5)
    err = M.sequence_errors(pred, gt)
    assert err["overlap"][3] == -1 and np.isinf(err["center_error"][3])
    assert err["valid"].tolist() == [True, True, True, False, True]
    cv = M.sequence_curves(err, denominator="valid")
    ca = M.sequence_curves(err, denominator="all")
    assert cv["success"][0] == pytest.approx(1.0) and ca["success"][0] == pytest.approx(0.8)
    assert cv["op50"] == pytest.approx(1.0) and ca["op50"] == pytest.approx(0.8)
    assert cv["precision_20"] == pytest.approx(1.0) and ca["precision_20"] == pytest.approx(0.8)
    assert cv["num_valid"] == 4 and cv["num_frames"] == 5
    # pytracking quirk: the invalid frame's normalized error is -1, a "hit" (upstream, all frames);
    # over the valid frames only valid frames count, so no score exceeds 100% (issue 18.7).
    assert err["norm_center_error"][3] == -1
    assert ca["norm_precision_20"] == pytest.approx(5 / 5)
    assert cv["norm_precision_20"] == pytest.approx(4 / 4)
    strict = M.sequence_curves(M.sequence_errors(pred, gt, strict_invalid=True))
    assert strict["norm_precision_20"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="denominator"):
        M.sequence_curves(err, denominator="some")


def test_visibility_nan_rows_and_dataset_branches():
    gt = _gt(4)
    gt[2] = np.nan
    pred = _gt(4)
    vis = np.array([1, 0, 1, 1])
    err = M.sequence_errors(pred, gt, visible=vis, dataset="lasot")
    assert err["valid"].tolist() == [True, False, False, True]
    assert err["overlap"][1] == -1 and err["overlap"][2] == -1
    assert np.isinf(err["norm_center_error"][1])  # LaSOT: invisible -> inf
    assert err["norm_center_error"][2] == -1  # invalid (NaN) but "visible" -> -1
    uav = M.sequence_errors(pred, gt, dataset="uav123")
    assert uav["center_error"][2] == -1
    with pytest.raises(ValueError, match="visibility"):
        M.sequence_errors(pred, gt, visible=[1, 1])


def test_strict_threshold_semantics():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    # frame 1: IoU exactly 0.5 (pred covers 5x10 inside gt: 50 / 100) -> not counted at t=0.5
    # frame 2: centre error exactly 20 px -> counted at 20 px
    pred = np.array([[0, 0, 10, 10], [0, 0, 5, 10], [20, 0, 10, 10]], dtype=float)
    err = M.sequence_errors(pred, gt)
    assert err["overlap"][1] == pytest.approx(0.5)
    assert err["center_error"][2] == pytest.approx(20.0)
    c = M.sequence_curves(err)
    assert c["op50"] == pytest.approx(1 / 3)  # only frame 0
    assert c["precision"][19] == pytest.approx(2 / 3)
    assert c["precision_20"] == pytest.approx(1.0)


def test_bad_inputs():
    gt = _gt(5)
    with pytest.raises(ValueError, match="seqX"):
        M.sequence_errors(_gt(4), gt, name="seqX")
    p = gt.copy()
    p[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.sequence_errors(p, gt, name="s")
    p = gt.copy()
    p[2, 2] = -1
    with pytest.raises(ValueError, match="negative"):
        M.sequence_errors(p, gt, name="s")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        M.sequence_errors(np.zeros((5, 3)), gt, name="s")
    g = gt.copy()
    g[:, 2] = 0
    with pytest.raises(ValueError, match="no valid frames"):
        M.sequence_curves(M.sequence_errors(gt, g), denominator="valid")
    with pytest.raises(ValueError):
        M.aggregate([])


def test_int_predictions_accepted():
    gt = _gt(3)
    r = M.evaluate_sequence(gt.astype(np.int64), gt)
    assert r["num_frames"] == 3


def test_aggregate_is_mean_over_sequences():
    gt = _gt(5)
    good = M.evaluate_sequence(gt, gt, name="good")
    bad_pred = gt.copy()
    bad_pred[1:, 0] += 1000  # no overlap after the first frame
    bad = M.evaluate_sequence(bad_pred, gt, name="bad")
    assert bad["op50"] == pytest.approx(0.2)
    agg = M.aggregate([good, bad])
    assert agg["op50"] == pytest.approx(100 * (1.0 + 0.2) / 2)
    assert agg["auc"] == pytest.approx(100 * (good["auc"] + bad["auc"]) / 2)
    assert set(agg["per_sequence"]) == {"good", "bad"}
    assert agg["success_curve"].shape == (21,) and agg["num_sequences"] == 2
    with pytest.raises(ValueError, match="duplicate"):
        M.aggregate([good, good])


def test_got10k_clipped_iou():
    W, H = 100, 50
    gt = np.array([[90.0, 40.0, 10.0, 10.0]])
    pred = np.array([[90.0, 40.0, 30.0, 30.0]])  # clipped to 10 x 10 -> identical to gt
    assert M.got10k_clipped_iou(pred, gt, (W, H))[0] == pytest.approx(1.0)
    pred2 = np.array([[-10.0, 0.0, 20.0, 10.0]])  # clipped to x=0: w stays 20 (<= W - 0) -> [0,0,20,10]
    gt2 = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert M.got10k_clipped_iou(pred2, gt2, (W, H))[0] == pytest.approx(100 / 200)
    # continuous: no +1, 1 px shift of a 10 px box
    assert M.got10k_clipped_iou([[1.0, 0, 10, 10]], [[0.0, 0, 10, 10]], (W, H))[0] == pytest.approx(90 / 110)


def test_got10k_pooling_vs_mean_of_means():
    W, H = 320, 240
    gt_a = np.tile([10.0, 10.0, 50.0, 50.0], (11, 1))
    gt_b = np.tile([10.0, 10.0, 50.0, 50.0], (3, 1))
    pred_a = gt_a.copy()  # IoU 1 on 10 counted frames
    pred_b = gt_b + [200, 0, 0, 0]  # IoU 0 on 2 counted frames
    ious = {"a": M.got10k_sequence_ious(pred_a, gt_a, (W, H), name="a"),
            "b": M.got10k_sequence_ious(pred_b, gt_b, (W, H), name="b")}
    assert ious["a"].shape == (10,) and ious["b"].shape == (2,)  # first frame excluded
    g = M.got10k_metrics(ious)
    assert g["ao"] == pytest.approx(100 * 10 / 12)  # pooled, not (100 + 0) / 2
    assert g["sr50"] == pytest.approx(100 * 10 / 12) and g["sr75"] == pytest.approx(100 * 10 / 12)
    assert g["num_frames"] == 12 and g["success_curve"].shape == (101,)
    assert g["per_sequence"]["a"]["ao"] == pytest.approx(100.0)
    assert M.got10k_metrics([ious["a"], ious["b"]])["ao"] == pytest.approx(g["ao"])


def test_got10k_cover_and_repetitions():
    gt = np.tile([10.0, 10.0, 50.0, 50.0], (4, 1))
    pred = gt.copy()
    pred[2, 0] += 500
    cover = np.array([8, 8, 0, 8])  # frame 2 is fully covered -> not counted
    ious = M.got10k_sequence_ious(pred, gt, (320, 240), cover=cover)
    np.testing.assert_allclose(ious, [1.0, 1.0])
    reps = M.got10k_sequence_ious(np.stack([pred, pred, pred]), gt, (320, 240), cover=cover)
    assert reps.shape == (6,)
    with pytest.raises(ValueError, match="seqG"):
        M.got10k_sequence_ious(pred[:3], gt, (320, 240), name="seqG")
    with pytest.raises(ValueError):
        M.got10k_metrics([])


def test_speed():
    assert M.speed_fps([0.1, 0.0, 0.05, np.nan]) == pytest.approx(15.0)
    assert np.isnan(M.speed_fps([0.0]))
