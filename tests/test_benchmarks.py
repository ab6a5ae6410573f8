"""Benchmark readers (grm_jax.datasets.load_benchmark) on tiny fake dataset trees."""

import numpy as np
import pytest

from grm_jax import datasets as BM
from grm_jax.errors import ConfigError, DataError, MissingFileError
from helpers import sequence_names


def _touch_frames(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


def _write_gt(path, rows, sep=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(str(v) for v in r) + "\n" for r in rows))


def _boxes(n):
    return [[10 + i, 20, 30, 40] for i in range(n)]


def test_list_and_unknown_name(tmp_path):
    assert BM.names("eval") == ["got10k_val", "got10k_test", "lasot", "trackingnet", "uav123", "nfs", "avist",
                                "otb100", "tnl2k", "folder", "sample_val"]
    with pytest.raises(ConfigError, match="unknown dataset 'vot2020'; valid names: .*lasot"):
        BM.load_benchmark("vot2020", tmp_path)
    with pytest.raises(ConfigError, match="'lasot_train' is a training set, not a benchmark"):
        BM.load_benchmark("lasot_train", tmp_path)
    with pytest.raises(MissingFileError, match="does not exist"):
        BM.load_benchmark("lasot", tmp_path / "nope")
    with pytest.raises(ConfigError, match="roots.lasot"):
        BM.load_benchmark("lasot", None)


def test_official_threshold():
    assert BM.official_threshold("lasot") == 0.4
    assert BM.official_threshold("lasot_test") == 0.4  # alias
    assert BM.official_threshold("nfs") == 0.6
    assert BM.official_threshold("uav123") == 0.55
    assert BM.official_threshold("avist") == 0.4
    assert BM.official_threshold("got10k_test") == 0.0
    assert BM.official_threshold("trackingnet") == 0.0
    assert BM.official_threshold("folder") == 0.0


def test_shipped_tables():
    assert len(BM.benchmark_sequence_names("lasot")) == 280
    assert len(BM.benchmark_sequence_names("avist")) == 120
    assert len(BM.benchmark_sequence_names("uav123")) == 123
    assert len(BM.benchmark_sequence_names("nfs")) == 100
    assert len(BM.benchmark_sequence_names("otb100")) == 100
    assert BM.benchmark_sequence_names("folder") is None


def test_dataset_root():
    assert BM.dataset_root("got10k_val", {"got10k": "/d/got"}) == "/d/got"
    assert BM.dataset_root("got10k_train_full", {"got10k": "/d/got"}) == "/d/got"
    assert BM.dataset_root("lasot", {"got10k": "/d/got"}) is None
    assert BM.dataset_root("sample_val", {}) == BM.DEFAULT_SAMPLE_ROOT
    assert BM.dataset_root("sample_train", {"sample": "/s"}) == "/s"


def _make_got(root, split, n=3, first_line_only=False):
    sdir = root / split / "GOT-10k_X_000001"
    _touch_frames(sdir, [f"{i:08d}.jpg" for i in range(1, n + 1)])
    _write_gt(sdir / "groundtruth.txt", _boxes(1 if first_line_only else n))
    (root / split / "list.txt").write_text("GOT-10k_X_000001\n")
    return sdir


def test_got10k_val(tmp_path):
    sdir = _make_got(tmp_path, "val")
    (sdir / "absence.label").write_text("0\n1\n0\n")
    (sdir / "cover.label").write_text("8\n0\n3\n")
    (seq,) = BM.load_benchmark("got10k_val", tmp_path)
    assert seq.name == "GOT-10k_X_000001" and seq.dataset == "got10k_val" and len(seq) == 3
    assert seq.frames[0].endswith("00000001.jpg")
    assert seq.ground_truth.dtype == np.float64 and seq.ground_truth.shape == (3, 4)
    np.testing.assert_array_equal(seq.cover, [8, 0, 3])
    np.testing.assert_array_equal(seq.absence, [False, True, False])
    assert seq.visible is None
    # root may also be the split folder itself
    assert BM.load_benchmark("got10k_val", tmp_path / "val")[0].name == seq.name
    # ground truth line count != frame count
    _write_gt(sdir / "groundtruth.txt", _boxes(4))
    with pytest.raises(ValueError, match="groundtruth.txt: 4 ground-truth lines but 3 frames"):
        BM.load_benchmark("got10k_val", tmp_path)
    # missing sequence folder listed in list.txt
    (tmp_path / "val" / "list.txt").write_text("GOT-10k_X_000001\nGOT-10k_X_000002\n")
    with pytest.raises(ValueError, match="GOT-10k_X_000002"):
        BM.load_benchmark("got10k_val", tmp_path, sequences=["GOT-10k_X_000002"])
    with pytest.raises(ValueError, match="unknown sequence"):
        BM.load_benchmark("got10k_val", tmp_path, sequences=["nope"])


def test_got10k_test_first_line_only(tmp_path):
    _make_got(tmp_path, "test", n=4, first_line_only=True)
    (seq,) = BM.load_benchmark("got10k_test", tmp_path)
    assert seq.ground_truth.shape == (4, 4)
    np.testing.assert_array_equal(seq.init_box, [10, 20, 30, 40])
    assert np.isnan(seq.ground_truth[1:]).all()


def test_lasot(tmp_path):
    sdir = tmp_path / "airplane" / "airplane-1"
    _touch_frames(sdir / "img", [f"{i:08d}.jpg" for i in range(1, 4)])
    _write_gt(sdir / "groundtruth.txt", _boxes(3))
    (sdir / "full_occlusion.txt").write_text("0,1,0")
    (sdir / "out_of_view.txt").write_text("0,0,1")
    (seq,) = BM.load_benchmark("lasot", tmp_path, sequences=["airplane-1"])
    assert seq.dataset == "lasot" and seq.object_class == "airplane"
    np.testing.assert_array_equal(seq.visible, [True, False, False])
    assert seq.frames[2].endswith("airplane-1/img/00000003.jpg")
    with pytest.raises(ValueError, match="missing sequence folder: .*airplane-9"):
        BM.load_benchmark("lasot", tmp_path, sequences=["airplane-9"])
    with pytest.raises(ValueError, match="missing sequence folder"):
        BM.load_benchmark("lasot", tmp_path)  # full split: the other 279 are missing
    (sdir / "img" / "00000002.jpg").unlink()
    with pytest.raises(ValueError, match="missing frame file: .*00000002.jpg"):
        BM.load_benchmark("lasot", tmp_path, sequences=["airplane-1"])
    (sdir / "img" / "00000002.jpg").write_bytes(b"")
    (sdir / "out_of_view.txt").write_text("0,0")
    with pytest.raises(ValueError, match="out_of_view.txt: 2 labels but 3 frames"):
        BM.load_benchmark("lasot", tmp_path, sequences=["airplane-1"])


def test_trackingnet(tmp_path):
    base = tmp_path / "TEST"
    _touch_frames(base / "frames" / "abc", [f"{i}.jpg" for i in range(12)])
    _write_gt(base / "anno" / "abc.txt", [[1, 2, 3, 4]])
    (seq,) = BM.load_benchmark("trackingnet", tmp_path)
    assert len(seq) == 12 and seq.frames[10].endswith("/10.jpg") and seq.frames[2].endswith("/2.jpg")
    np.testing.assert_array_equal(seq.init_box, [1, 2, 3, 4])
    assert np.isnan(seq.ground_truth[1:]).all()
    _write_gt(base / "anno" / "missing.txt", [[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="missing sequence folder: .*missing"):
        BM.load_benchmark("trackingnet", tmp_path)


def test_uav123_nfs_from_tables(tmp_path):
    # uav_uav6: data_seq/UAV123/uav6, frames 000001..000109, anno/UAV123/uav6.txt (NaN rows allowed)
    _touch_frames(tmp_path / "data_seq/UAV123/uav6", [f"{i:06d}.jpg" for i in range(1, 110)])
    rows = _boxes(109)
    rows[5] = ["NaN", "NaN", "NaN", "NaN"]
    _write_gt(tmp_path / "anno/UAV123/uav6.txt", rows)
    (seq,) = BM.load_benchmark("uav123", tmp_path, sequences=["uav_uav6"])
    assert seq.dataset == "uav123" and len(seq) == 109 and np.isnan(seq.ground_truth[5]).all()
    assert seq.frames[0].endswith("uav6/000001.jpg") and seq.object_class == "aircraft"
    # nfs_car_jumping: sequences/car_jumping 00001..00022, anno/nfs_car_jumping.txt (tab separated)
    _touch_frames(tmp_path / "sequences/car_jumping", [f"{i:05d}.jpg" for i in range(1, 23)])
    _write_gt(tmp_path / "anno/nfs_car_jumping.txt", _boxes(22), sep="\t")
    (seq,) = BM.load_benchmark("nfs", tmp_path, sequences=["nfs_car_jumping"])
    assert len(seq) == 22 and seq.ground_truth[3, 0] == 13
    _write_gt(tmp_path / "anno/nfs_car_jumping.txt", _boxes(21), sep="\t")
    with pytest.raises(ValueError, match="nfs_car_jumping.txt: 21 ground-truth lines but 22 frames"):
        BM.load_benchmark("nfs", tmp_path, sequences=["nfs_car_jumping"])


def test_otb_init_omit_and_start_frame(tmp_path):
    # otb_Tiger1: frames 1..354 with initOmit 5 -> frames 6..354 and gt rows 5..353
    _touch_frames(tmp_path / "Tiger1/img", [f"{i:04d}.jpg" for i in range(1, 355)])
    _write_gt(tmp_path / "Tiger1/groundtruth_rect.txt", _boxes(354), sep=" ")
    (seq,) = BM.load_benchmark("otb100", tmp_path, sequences=["otb_Tiger1"])
    assert len(seq) == 349 and seq.frames[0].endswith("0006.jpg") and seq.ground_truth[0, 0] == 15


def test_avist(tmp_path):
    name = BM.benchmark_sequence_names("avist")[0]
    _touch_frames(tmp_path / "sequences" / name, [f"img_{i:05d}.jpg" for i in range(1, 4)])
    _write_gt(tmp_path / "anno" / f"{name}.txt", _boxes(3))
    (tmp_path / "full_occlusion").mkdir()
    (tmp_path / "out_of_view").mkdir()
    (tmp_path / "full_occlusion" / f"{name}_full_occlusion.txt").write_text("0,0,1")
    (tmp_path / "out_of_view" / f"{name}_out_of_view.txt").write_text("1,0,0")
    (seq,) = BM.load_benchmark("avist", tmp_path, sequences=[name])
    np.testing.assert_array_equal(seq.visible, [False, True, False])
    assert seq.dataset == "avist"
    with pytest.raises(ValueError, match="missing file: .*anno"):
        BM.load_benchmark("avist", tmp_path, sequences=[BM.benchmark_sequence_names("avist")[1]])


def test_tnl2k_and_bad_gt_line(tmp_path):
    sdir = tmp_path / "seqA"
    _touch_frames(sdir / "imgs", ["00001.png", "00002.png"])
    _write_gt(sdir / "groundtruth.txt", _boxes(2))
    (seq,) = BM.load_benchmark("tnl2k", tmp_path)
    assert seq.name == "seqA" and len(seq) == 2 and seq.dataset == "tnl2k"
    (sdir / "groundtruth.txt").write_text("1,2,3,4\n1,2,x,4\n")
    with pytest.raises(ValueError, match="groundtruth.txt, line 2"):
        BM.load_benchmark("tnl2k", tmp_path)
    (sdir / "groundtruth.txt").write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(DataError, match="groundtruth.txt, line 2: expected 4 numbers"):
        BM.load_benchmark("tnl2k", tmp_path)


def test_folder_fake(tmp_path):
    _touch_frames(tmp_path / "s1", ["00001.jpg", "00002.jpg", "00003.jpg"])
    (tmp_path / "s1" / "groundtruth.txt").write_text("1\t2\t3\t4\r\n5 6 7 8\n9,10,11,12")
    (seq,) = BM.load_benchmark("folder", tmp_path)
    np.testing.assert_array_equal(seq.ground_truth, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    with pytest.raises(ValueError, match="no sequence folders"):
        BM.load_benchmark("folder", tmp_path / "s1")


def test_folder_real_sequences(real_sequences):
    seqs = BM.load_benchmark("folder", real_sequences)
    by_name = {s.name: s for s in seqs}
    assert len(seqs) >= 1
    for s in seqs:
        assert len(s.frames) == s.ground_truth.shape[0] > 0
        assert s.frames[0].endswith("00001.jpg")
        assert np.isfinite(s.ground_truth).all() and (s.ground_truth[:, 2:] > 0).all()
    if "Crossing" in by_name:
        assert len(by_name["Crossing"]) == 120


def test_groundtruth_with_bom(tmp_path):
    """A groundtruth.txt saved with a UTF-8 byte-order mark reads like one without."""
    _touch_frames(tmp_path / "s1", ["00001.jpg", "00002.jpg"])
    (tmp_path / "s1" / "groundtruth.txt").write_bytes(b"\xef\xbb\xbf1,2,3,4\r\n5,6,7,8\r\n")
    (seq,) = BM.load_benchmark("folder", tmp_path)
    np.testing.assert_array_equal(seq.ground_truth, [[1, 2, 3, 4], [5, 6, 7, 8]])
    (tmp_path / "s1" / "groundtruth.txt").write_bytes(b"1,2,3,4\n5,6,\xff,8\n")
    with pytest.raises(DataError, match="groundtruth.txt: not a UTF-8 text file"):
        BM.load_benchmark("folder", tmp_path)


def test_sample_val(tmp_path):
    """sample_val: the generated data's validation split, generated on first use, scored like GOT-10k."""
    seqs = BM.load_benchmark("sample_val", tmp_path / "sample")
    assert seqs and all(s.dataset == "sample_val" for s in seqs)
    assert all(s.cover is not None and len(s.cover) == len(s) == s.ground_truth.shape[0] for s in seqs)
    assert BM.DATASETS["sample_val"].scoring == "got10k"
    train = BM.training_source("sample_train", tmp_path / "sample")
    assert train.name == "sample_train" and not set(sequence_names(train)) & {s.name for s in seqs}
