"""data.reduced_decode (data_pipelines/frames.py): off by default; decodes a frame at 1/k only when its
crop keeps at least the output size; the exact crops whenever k = 1; close to the exact crops otherwise."""
import math

import cv2
import numpy as np
import pytest

from data_pipelines.frames import PairFrame, decode_reduction
from data_pipelines.pipeline import PairMaker
from grm_jax.datasets.source import Source, make_info
from grm_jax.run_config import CropSpec, DataConfig

TEMPLATE, SEARCH = CropSpec(2.0, 64), CropSpec(4.0, 128, 3.0, 0.25)
FRAMES, H, W = 20, 240, 320


def test_off_by_default():
    assert DataConfig().reduced_decode is False


def test_decode_reduction_never_upsamples():
    assert decode_reduction((10, 10), 4.0, 256) == 1
    assert decode_reduction((64, 64), 4.0, 256) == 1      # side 256: kept at full size
    assert decode_reduction((128, 128), 4.0, 256) == 2    # side 512 = 2 x 256
    assert decode_reduction((127.9, 128), 4.0, 256) == 1  # just short of 2 x 256
    assert decode_reduction((256, 256), 4.0, 256) == 4
    assert decode_reduction((1000, 900), 2.0, 128) == 8
    assert decode_reduction((float("nan"), 5), 4.0, 256) == 1
    for wh in np.random.default_rng(0).uniform(5, 900, (200, 2)):
        k = decode_reduction(wh, 4.0, 256)
        assert math.sqrt(wh[0] * wh[1]) * 4.0 / k >= 256 or k == 1


class _JpegSource(Source):
    """One in-memory sequence of JPEG frames (a smooth scene) with the given boxes."""

    name = "jpegs"

    def __init__(self, boxes, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.frames = []
        for _ in range(FRAMES):
            low = rng.integers(0, 256, (H // 32, W // 32, 3), dtype=np.uint8)
            img = cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC)
            self.frames.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
        self.boxes = np.asarray(boxes, np.float32)
        self.requests = []

    def _sequence_names(self):
        return ["seq"]

    def _read_sequence_info(self, i):
        return make_info(self.boxes, None)

    def frame_path(self, i, f):
        return f"memory:{f}"

    def frame_bytes(self, i, f):
        return self.frames[f]

    def load_frame_reduced(self, i, f, reduce):
        self.requests.append(reduce)
        return super().load_frame_reduced(i, f, reduce)


def _boxes(side_lo, side_hi, seed=1):
    rng = np.random.default_rng(seed)
    side = rng.uniform(side_lo, side_hi, (FRAMES, 2))
    xy = rng.uniform(0, 1, (FRAMES, 2)) * (np.array([W, H]) - side)
    return np.concatenate([xy, side], axis=1)


def _samples(source, reduced, n=12):
    maker = PairMaker([source], [1.0], TEMPLATE, SEARCH, max_gap=200, seed=3, stride=16, reduced_decode=reduced)
    return [maker(i) for i in range(n)]


def test_small_objects_give_the_exact_samples():
    """Crops of small objects cannot be reduced (k = 1): the lazy decoding gives the exact samples."""
    source = _JpegSource(_boxes(12, 30))
    exact, reduced = _samples(source, False), _samples(source, True)
    assert source.requests and set(source.requests) == {1}
    for a, b in zip(exact, reduced):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_large_objects_reduced_close_to_exact():
    """Large objects: frames decoded at 1/2 or 1/4; the crops stay close to the exact ones (the
    difference: libjpeg's block averaging instead of bilinear sampling of the full frame) and the
    boxes agree within half an output pixel (the crop corner is rounded on the coarser grid)."""
    source = _JpegSource(_boxes(70, 200))
    exact, reduced = _samples(source, False), _samples(source, True)
    assert {2, 4} <= set(source.requests)
    assert sum(not np.array_equal(a["template"], b["template"]) for a, b in zip(exact, reduced)) >= 6
    diffs = []
    for a, b in zip(exact, reduced):
        assert a["index"] == b["index"]
        for key, size in (("template", 64), ("search", 128)):
            assert b[key].shape == a[key].shape and b[key].dtype == np.float32
            diffs.append(np.abs(a[key] - b[key]).mean())  # normalized units (1 = ~57 grey levels)
            np.testing.assert_allclose(a[f"{key}_box"], b[f"{key}_box"], atol=0.55 / size)
            assert (a[f"{key}_att"] != b[f"{key}_att"]).mean() < 0.05
    assert max(diffs) < 0.2 and np.mean(diffs) < 0.1


def test_reduced_crops_keep_the_box_on_the_object():
    """A bright square on a dark frame, decoded at 1/4 (1/2 when the search jitter shrinks the box):
    the output box still covers the square."""
    img = np.full((H, W - 2, 3), 30, np.uint8)  # 318 px wide: not a multiple of 4 (flipped frames shift)
    img[60:188, 100:228] = 230
    source = _JpegSource(np.tile([100, 60, 128, 128], (FRAMES, 1)))
    source.frames = [cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()] * FRAMES
    for sample in _samples(source, True, n=10):
        for key, size in (("template", 64), ("search", 128)):
            x, y, w, h = sample[f"{key}_box"] * size
            inside = sample[key][int(y + 2):int(y + h - 2), int(x + 2):int(x + w - 2)]
            assert inside.size and inside.mean() > 1.2  # bright (normalized 230 ~ +1.9)
            assert sample[key][int(y + h / 2), max(int(x) - 4, 0)].mean() < 0  # dark left of the box
    assert 4 in source.requests and set(source.requests) <= {2, 4}


def test_pair_frame_decodes_once_and_reuses_finer_decodes():
    source = _JpegSource(_boxes(70, 200))
    frame = PairFrame.from_source(source, 0, 3)
    img2, k2, full = frame.get(2, gray=False)
    assert k2 == 2 and img2.shape == (H // 2, W // 2, 3) and full == (H, W)
    img4, k4, _ = frame.get(4, gray=True)  # the 1/2 decode is reused (finer), turned grey
    assert k4 == 2 and source.requests == [2]
    assert np.array_equal(img4[..., 0], img4[..., 2]) and img4.shape == img2.shape
    with pytest.raises(ValueError, match="not both"):
        PairFrame(image=img2, loader=lambda k: None)


def test_pair_maker_prepares_each_process(monkeypatch):
    """Once per process: freed memory kept; in a worker (another process than the one that built the
    maker) OpenCV single-threaded."""
    import data_pipelines.pipeline as pipeline_module

    calls = []
    monkeypatch.setattr(pipeline_module, "keep_freed_memory", lambda: calls.append(1) or True)
    maker = PairMaker([_JpegSource(_boxes(12, 30))], [1.0], TEMPLATE, SEARCH, max_gap=200, seed=3)
    threads = cv2.getNumThreads()
    try:
        maker(0), maker(1)
        assert len(calls) == 1 and cv2.getNumThreads() == threads  # the building process: cv2 untouched
        maker._home_pid = -1  # as in a grain worker process
        maker._ready_pid = None
        maker(2)
        assert len(calls) == 2 and cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(threads)
