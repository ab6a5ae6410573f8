"""Training readers (grm_jax.datasets) on small synthetic trees (real layouts), visibility rules, clear errors."""
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from grm_jax import datasets
from grm_jax.annotations import MissingAnnotationError
from grm_jax.datasets import CorruptImageError, files, training_source
from grm_jax.datasets.coco import CocoSource
from grm_jax.datasets.got10k import Got10kSource
from grm_jax.datasets.lasot import LasotSource
from grm_jax.datasets.sample import SampleSource
from grm_jax.datasets.sample_generator import ensure_sample_dataset
from grm_jax.datasets.trackingnet import TrackingNetSource
from grm_jax.errors import ConfigError, DataError, MissingFileError
from helpers import sequence_names


def _jpg(path, seed=0, hw=(24, 32)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _tree_digest(root):
    h = hashlib.sha256()
    for dp, dns, fns in sorted(os.walk(root)):
        dns.sort()
        for fn in sorted(fns):
            p = os.path.join(dp, fn)
            h.update(os.path.relpath(p, root).encode())
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ sample

def test_sample_dataset_deterministic_and_idempotent(tmp_path):
    a = ensure_sample_dataset(tmp_path / "a")
    b = ensure_sample_dataset(tmp_path / "b")
    assert _tree_digest(a) == _tree_digest(b)
    mtime = os.path.getmtime(os.path.join(a, "train", "list.txt"))
    assert ensure_sample_dataset(a) == a  # second call: nothing rewritten
    assert os.path.getmtime(os.path.join(a, "train", "list.txt")) == mtime
    with pytest.raises(FileExistsError):
        ensure_sample_dataset(a, seed=1)

    src = SampleSource(a)
    assert src.is_video and len(src) == 8
    val = SampleSource(a, split="val")
    assert len(val) == 3
    n_invisible = 0
    for i in range(len(src)):
        info = src.sequence_info(i)
        assert 30 <= info.num_frames <= 40
        assert info.boxes.dtype == np.float32 and info.boxes.shape == (info.num_frames, 4)
        n_invisible += int((~info.visible).sum())
        img = src.load_frame(i, 0)
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8
    assert n_invisible >= 8  # absent / fully covered frames exist


# ------------------------------------------------------------------------------------------ GOT-10k

def _got10k_tree(root, names, n=6):
    base = os.path.join(root, "train")
    for k, name in enumerate(names):
        d = os.path.join(base, name)
        boxes = [f"{10 + f},{12 + f},{20 if f != 4 else 0},{15}" for f in range(n)]
        _write(os.path.join(d, "groundtruth.txt"), "\n".join(boxes) + "\n")
        _write(os.path.join(d, "absence.label"), "\n".join(["0", "1", "0", "0", "0", "0"][:n]) + "\n")
        _write(os.path.join(d, "cover.label"), "\n".join(["8", "0", "0", "3", "8", "8"][:n]) + "\n")
        for f in range(n):
            _jpg(os.path.join(d, f"{f + 1:08d}.jpg"), seed=k * 100 + f)
    _write(os.path.join(base, "list.txt"), "\n".join(names) + "\n")
    return root


def test_got10k_visibility_and_frames(tmp_path):
    root = _got10k_tree(tmp_path / "got", ["GOT-10k_Train_000002", "GOT-10k_Train_000001"])
    src = Got10kSource(str(root), split="all")
    assert sequence_names(src) == ["GOT-10k_Train_000002", "GOT-10k_Train_000001"]  # list.txt order
    info = src.sequence_info(0)
    # frame 1: absent; frame 2: cover 0; frame 4: w = 0; frames 0, 3, 5 visible
    np.testing.assert_array_equal(info.visible, [1, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(info.valid, [1, 1, 1, 1, 0, 1])
    np.testing.assert_allclose(info.boxes[2], [12, 14, 20, 15])
    assert src.frame_path(0, 0).endswith(os.path.join("GOT-10k_Train_000002", "00000001.jpg"))
    assert src.load_frame(1, 5).shape == (24, 32, 3)
    assert sequence_names(training_source("got10k_train_all", str(root))) == sequence_names(src)
    assert training_source("got10k_train_all", str(root)).name == "got10k_train_all"


def test_got10k_split_files(tmp_path, monkeypatch):
    names = [f"GOT-10k_Train_{k:06d}" for k in range(1, 5)]
    root = _got10k_tree(tmp_path / "got", names)
    splits = tmp_path / "splits"
    _write(splits / "got10k_train_split.txt", "2\n0\n3\n1\n")
    _write(splits / "got10k_vot_train_split.txt", "3\n1\n")
    monkeypatch.setattr(files, "SPLITS_DIR", str(splits))
    assert sequence_names(Got10kSource(str(root), "train_full")) == [names[2], names[0], names[3], names[1]]
    assert sequence_names(Got10kSource(str(root), "vot_train")) == [names[3], names[1]]
    _write(splits / "got10k_vot_train_split.txt", "7\n")
    with pytest.raises(ValueError, match="got10k_vot_train_split.txt"):
        Got10kSource(str(root), "vot_train")


def test_shipped_split_files():
    full = files.read_split_indices("got10k_train_split.txt")
    vot = files.read_split_indices("got10k_vot_train_split.txt")
    assert len(files.read_split_names("lasot_train_split.txt")) == 1120
    assert len(full) == 9335 and sorted(full) == list(range(9335))
    assert len(vot) == 7086 and set(vot) <= set(full)


def test_got10k_errors_name_the_file(tmp_path):
    root = _got10k_tree(tmp_path / "got", ["s1"])
    d = os.path.join(root, "train", "s1")
    os.remove(os.path.join(d, "cover.label"))
    src = Got10kSource(str(root), split="all")
    with pytest.raises(FileNotFoundError, match="cover.label"):
        src.sequence_info(0)
    _write(os.path.join(d, "cover.label"), "8\n8\n")  # wrong length
    with pytest.raises(ValueError, match="cover.label"):
        Got10kSource(str(root), split="all").sequence_info(0)
    _write(os.path.join(d, "groundtruth.txt"), "1,2,3\n")
    with pytest.raises(ValueError, match="groundtruth.txt"):
        Got10kSource(str(root), split="all").sequence_info(0)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Got10kSource(str(tmp_path / "nowhere"))
    # corrupt image: a clear, dedicated error naming the file
    _write(os.path.join(d, "00000002.jpg"), "not a jpeg")
    with pytest.raises(CorruptImageError, match="00000002.jpg"):
        src.load_frame(0, 1)
    with pytest.raises(CorruptImageError, match="00000099.jpg"):
        src.load_frame(0, 98)


# ------------------------------------------------------------------------------------------ LaSOT

def test_lasot(tmp_path):
    root = tmp_path / "lasot"
    d = root / "cat" / "cat-3"
    _write(d / "groundtruth.txt", "\n".join(f"{5 + f},{6},{10},{0 if f == 2 else 9}" for f in range(5)) + "\n")
    _write(d / "full_occlusion.txt", "0,1,0,0,0")
    _write(d / "out_of_view.txt", "0,0,0,1,0")
    for f in range(5):
        _jpg(d / "img" / f"{f + 1:08d}.jpg", seed=f)
    src = LasotSource(str(root), sequences=["cat-3"])
    info = src.sequence_info(0)
    np.testing.assert_array_equal(info.visible, [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(info.valid, [1, 1, 0, 1, 1])
    assert src.frame_path(0, 4).endswith(os.path.join("cat", "cat-3", "img", "00000005.jpg"))
    assert src.load_frame(0, 4).shape == (24, 32, 3)
    official = LasotSource(str(root))  # the shipped 1120-name training list
    assert len(official) == 1120 and official.sequence_name(0) == "airplane-10"
    with pytest.raises(FileNotFoundError, match="airplane-10"):
        official.sequence_info(0)
    _write(d / "out_of_view.txt", "0,0")
    with pytest.raises(ValueError, match="out_of_view.txt"):
        LasotSource(str(root), sequences=["cat-3"]).sequence_info(0)


# ------------------------------------------------------------------------------------------ TrackingNet

def test_trackingnet(tmp_path):
    root = tmp_path / "tn"
    n = 65
    for k, names in ((0, ["b_seq", "a_seq"]), (2, ["c_seq"])):
        for name in names:
            rows = [f"{1 + f},{2},{10},{8}" for f in range(n)]
            rows[60] = "1,2,0,8"
            _write(root / f"TRAIN_{k}" / "anno" / f"{name}.txt", "\n".join(rows) + "\n")
    _jpg(root / "TRAIN_0" / "frames" / "a_seq" / "30.jpg")
    src = TrackingNetSource(str(root))
    assert src.chunks == [0, 2]
    assert sequence_names(src) == ["a_seq", "b_seq", "c_seq"]
    info = src.sequence_info(0)
    assert info.num_frames == n
    # annotated frames 0, 30, 60 and the last (64); 60 has w = 0
    np.testing.assert_array_equal(np.flatnonzero(info.visible), [0, 30, 64])
    assert info.valid.sum() == n - 1
    assert src.load_frame(0, 30).shape == (24, 32, 3)
    assert src.frame_path(2, 7).endswith(os.path.join("TRAIN_2", "frames", "c_seq", "7.jpg"))
    with pytest.raises(FileNotFoundError, match="TRAIN_5"):
        TrackingNetSource(str(root), chunks=[5])
    with pytest.raises(FileNotFoundError, match="TRAIN_0"):
        TrackingNetSource(str(tmp_path))


# ------------------------------------------------------------------------------------------ COCO

def test_coco(tmp_path):
    root = tmp_path / "coco"
    _jpg(root / "train2017" / "000000000001.jpg", hw=(200, 220))
    _jpg(root / "train2017" / "000000000002.jpg", hw=(100, 120), seed=1)
    ann = {
        "images": [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "000000000002.jpg"}],
        "annotations": [
            {"id": 11, "image_id": 1, "bbox": [10, 10, 60, 70], "iscrowd": 0},
            {"id": 12, "image_id": 1, "bbox": [0, 0, 200, 200], "iscrowd": 1},
            {"id": 13, "image_id": 2, "bbox": [5, 5, 50, 80], "iscrowd": 0},
            {"id": 14, "image_id": 2, "bbox": [5, 5, 51, 51], "iscrowd": 0},
        ],
    }
    _write(root / "annotations" / "instances_train2017.json", json.dumps(ann))
    src = CocoSource(str(root))
    assert not src.is_video
    assert sequence_names(src) == ["11", "13", "14"]  # crowd dropped, json order
    vis = [bool(src.sequence_info(i).visible[0]) for i in range(3)]
    assert vis == [True, False, True]  # the reader's flag: w and h must both exceed 50
    # ... which the official sampler ignores for image datasets: the 50 px object is trained on too
    from data_pipelines.sampler import PairSampler
    sampler = PairSampler([src])
    drawn = {sampler.sample(np.random.default_rng([4, k])).sequence for k in range(100)}
    assert drawn == {0, 1, 2}
    assert src.sequence_info(0).num_frames == 1
    assert src.load_frame(1, 0).shape == (100, 120, 3)
    np.testing.assert_allclose(src.sequence_info(2).boxes[0], [5, 5, 51, 51])
    _write(root / "annotations" / "instances_train2017.json", "{broken")
    with pytest.raises(ValueError, match="instances_train2017.json"):
        CocoSource(str(root))
    os.remove(root / "annotations" / "instances_train2017.json")
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        CocoSource(str(root))


def test_training_source_names_and_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        training_source("imagenet", str(tmp_path))
    with pytest.raises(ConfigError, match="roots.lasot"):
        training_source("lasot_train", None)
    with pytest.raises(ConfigError, match="roots.coco"):
        training_source("coco2017", None)  # alias of coco_train
    with pytest.raises(ConfigError, match="'lasot' is a benchmark, not a training set") as e:
        training_source("lasot", str(tmp_path))
    assert "lasot_train" in e.value.hint
    with pytest.raises(ConfigError, match="unknown dataset 'got10k'"):  # 'got10k' alone means nothing
        training_source("got10k", str(tmp_path))


def test_error_family():
    assert issubclass(CorruptImageError, DataError) and issubclass(MissingAnnotationError, MissingFileError)
    assert issubclass(MissingFileError, DataError) and issubclass(MissingFileError, FileNotFoundError)


def test_groundtruth_with_bom_and_bad_rows(tmp_path):
    root = _got10k_tree(tmp_path / "got", ["s1"])
    gt = os.path.join(root, "train", "s1", "groundtruth.txt")
    with open(gt, "rb") as f:
        body = f.read()
    with open(gt, "wb") as f:  # a UTF-8 byte-order mark, as some Windows editors write
        f.write(b"\xef\xbb\xbf" + body)
    info = Got10kSource(str(root), split="all").sequence_info(0)
    np.testing.assert_allclose(info.boxes[0], [10, 12, 20, 15])
    _write(gt, "1,2,3,4\n1,2,inf,4\n")
    with pytest.raises(DataError, match=r"groundtruth.txt, line 2: infinite value"):
        Got10kSource(str(root), split="all").sequence_info(0)
    _write(gt, "1,2,3,4\n\n1,2,3\n")
    with pytest.raises(DataError, match=r"groundtruth.txt, line 3: expected 4 numbers, got 3"):
        Got10kSource(str(root), split="all").sequence_info(0)
    _write(os.path.join(root, "train", "s1", "cover.label"), "8\n0.5\n")
    _write(os.path.join(root, "train", "s1", "absence.label"), "0\n0\n")
    _write(gt, "1,2,3,4\n1,2,3,4\n")
    with pytest.raises(DataError, match="cover.label: labels must be integers"):
        Got10kSource(str(root), split="all").sequence_info(0)
