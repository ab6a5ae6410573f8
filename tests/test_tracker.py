"""Tracker parity with the official GRM tracker on track_tiny (docs/PARITY.md §7), and input errors."""
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.errors import ConfigError
from grm_jax.model import GRM
from grm_jax.track.tracker import TrackParams, Tracker, validate_box
from grm_jax.errors import DataError as FrameError
from grm_jax.track.frames import iter_frames, read_image

TT = FIXTURES / "track_tiny"
CKPT = FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"


@pytest.fixture(scope="module")
def tiny_model():
    config, variables = convert_grm_checkpoint(str(CKPT))
    return GRM(config), variables


@pytest.fixture(scope="module")
def video():
    return np.load(TT / "frames.npz")


@pytest.fixture(scope="module")
def expected():
    return np.load(TT / "track_output.npz")


@pytest.fixture(scope="module")
def tracker(tiny_model, video):
    model, variables = tiny_model
    t = Tracker(model, variables, None, threshold=0.0)
    t.initialize(video["frames"][0], video["gt_visible_xywh"][0])
    return t


def test_template_crop_identical(tracker, expected):
    np.testing.assert_array_equal(tracker.template_crop, expected["template_crop"])
    assert tracker.template_resize_factor == float(expected["template_resize_factor"])
    assert float(expected["threshold"]) == tracker.threshold == 0.0


def test_free_running_parity(tiny_model, video, expected):
    model, variables = tiny_model
    t = Tracker(model, variables, {"search_factor": 4.0}, threshold=0.0)
    frames = video["frames"]
    t.initialize(frames[0], video["gt_visible_xywh"][0])
    boxes = [t.state.copy()]
    for f in range(1, len(frames)):
        box = t.track(frames[f])
        assert box.dtype == np.float64 and box.shape == (4,)
        np.testing.assert_allclose(t.last_search_box, expected["state_in_xywh"][f - 1], rtol=0, atol=0.01)
        assert t.last_resize_factor == float(expected["search_resize_factors"][f - 1])  # same crop size
        if f == 1:
            np.testing.assert_array_equal(t.last_search_crop, expected["frame1_search_crop"])
        boxes.append(box)
    boxes = np.asarray(boxes)
    assert np.abs(boxes - expected["boxes_xywh"]).max() < 0.01


def test_teacher_forced_parity(tracker, video, expected):
    frames = video["frames"]
    for f in range(1, len(frames)):
        box = tracker.track(frames[f], state=expected["state_in_xywh"][f - 1])
        assert tracker.last_resize_factor == float(expected["search_resize_factors"][f - 1])
        assert np.abs(box - expected["boxes_xywh"][f]).max() < 0.01, f
        # the division the overlay shows: E_A fraction per dividing layer
        np.testing.assert_allclose(tracker.last_decisions.mean(axis=1), expected["ea_fraction"][f - 1], atol=1e-6)
        # the device box before map-back equals the official normalized box * S / resize_factor
        px = expected["pred_box_crop_norm"][f - 1].astype(np.float32) * np.float32(256) \
            / np.float32(expected["search_resize_factors"][f - 1])
        np.testing.assert_allclose(tracker.last_box_px, px, atol=1e-3)
    assert tracker.divide_layers == (1, 2, 3)


def test_crop_sizes_come_from_the_model(tiny_model):
    model, variables = tiny_model
    t = Tracker(model, variables, {"search_factor": 5.0}, threshold=0.0)
    assert t.params.search_size == model.config.search_size and t.params.search_factor == 5.0
    assert TrackParams.from_config(None).template_size == 128
    with pytest.raises(ConfigError, match=r"track\.search_size.*model\.search_size"):
        Tracker(model, variables, {"search_size": 320}, threshold=0.0)
    with pytest.raises(ConfigError, match="track.search_factor=-1"):
        TrackParams.from_config({"search_factor": -1.0})


@pytest.mark.parametrize("box, match", [
    ([10, 10, float("nan"), 20], "w = nan"),
    ([10, 10, 0, 20], "w = 0.0"),
    ([10, 10, 20, -5], "h = -5.0"),
    ([10, float("inf"), 20, 20], "y = inf"),
    ([1, 2, 3], "4 numbers"),
])
def test_bad_init_box(tiny_model, video, box, match):
    with pytest.raises(ValueError, match=match):
        validate_box(box)
    t = Tracker(*tiny_model)
    with pytest.raises(ValueError, match=match):
        t.initialize(video["frames"][0], box)


def test_bad_frames(tiny_model, tracker, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        tracker.track(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(FrameError, match="missing frame file: .*nope.jpg"):
        read_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(FrameError, match="cannot read image.*bad.jpg"):
        read_image(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FrameError, match="no image files"):
        next(iter_frames(empty))
    with pytest.raises(FrameError, match="missing video file or frame folder"):
        next(iter_frames(tmp_path / "missing.mp4"))
    with pytest.raises(RuntimeError, match="before initialize"):
        Tracker(*tiny_model).track(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        Tracker(*tiny_model, threshold=1.5)


def test_bad_benchmark_inputs(tmp_path):
    from grm_jax.evaluate.runner import resolve_benchmark
    from grm_jax import datasets as bm

    with pytest.raises(ValueError, match="unknown dataset 'nosuch'.*lasot"):
        resolve_benchmark(None, "nosuch")
    seq = tmp_path / "root" / "s1"
    seq.mkdir(parents=True)
    import cv2
    for i in range(3):
        cv2.imwrite(str(seq / f"{i:05d}.png"), np.zeros((8, 8, 3), np.uint8))
    (seq / "groundtruth.txt").write_text("1,1,4,4\n1,1,4,4\n")
    with pytest.raises(ValueError, match="2 ground-truth lines but 3 frames"):
        bm.load_benchmark("folder", tmp_path / "root")


def test_no_recompile_across_frames_sizes_thresholds(tiny_model, video):
    from grm_jax.track.tracker import step_function

    model, variables = tiny_model
    fn = step_function(model.config)
    t = Tracker(model, variables, None, threshold=0.0)
    t.initialize(video["frames"][0], video["gt_visible_xywh"][0])
    t.track(video["frames"][1])
    before = fn._cache_size()
    for thr, (h, w) in ((0.0, (240, 320)), (0.55, (97, 131)), (0.4, (400, 180))):
        t = Tracker(model, variables, None, threshold=thr)
        frames = [np.ascontiguousarray(np.resize(f, (h, w, 3))) for f in video["frames"][:4]]
        t.initialize(frames[0], [10, 12, 30, 25])
        for f in frames[1:]:
            t.track(f)
    assert fn._cache_size() == before


def test_video_file_roundtrip(tmp_path, video):
    from grm_jax.track.frames import FrameSource
    from grm_jax.track.video import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, fps=12) as w:
        for f in video["frames"][:5]:
            w.write(f)
    frames = list(iter_frames(path))
    assert len(frames) == 5 and frames[0].shape == (240, 320, 3) and frames[0].dtype == np.uint8
    with FrameSource(path) as src:
        assert src.expected == 5 and src.fps == pytest.approx(12)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(FrameError, match="broken.mp4"):
        list(iter_frames(bad))
