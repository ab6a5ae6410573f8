"""Batched tracking (B sequences per device call, slots refilled) == one-by-one tracking."""
import dataclasses

import cv2
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.model import GRM
from grm_jax.track.batched import BatchedTracker
from helpers import track_sequences
from grm_jax.track.tracker import Tracker


@dataclasses.dataclass
class Seq:
    name: str
    frames: list
    init_box: np.ndarray


def _video(seed, n, h, w):
    """Smooth random background with a bright textured square moving around."""
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    side = max(6, min(h, w) // 5)
    x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
    frames, boxes = [], []
    for _ in range(n):
        f = bg.copy()
        xi, yi = int(x), int(y)
        f[yi:yi + side, xi:xi + side] = (rng.integers(150, 255, (side, side, 3))).astype(np.uint8)
        frames.append(f)
        boxes.append([x, y, side, side])
        x = float(np.clip(x + rng.normal(0, 3), 0, w - side))
        y = float(np.clip(y + rng.normal(0, 3), 0, h - side))
    return frames, np.asarray(boxes)


@pytest.fixture(scope="module")
def tiny_model():
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
    return GRM(config), variables


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    specs = [(7, 240, 320), (1, 100, 90), (3, 96, 128), (10, 150, 200), (5, 64, 64), (4, 300, 180)]
    out = []
    for k, (n, h, w) in enumerate(specs):
        frames, boxes = _video(k, n, h, w)
        if k == 2:  # one sequence from image files
            d = tmp_path_factory.mktemp("seq2")
            paths = []
            for i, f in enumerate(frames):
                p = d / f"{i:05d}.png"
                cv2.imwrite(str(p), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
                paths.append(str(p))
            frames = paths
        out.append(Seq(f"s{k}", frames, boxes[0]))
    return out


def _one_by_one(model, variables, seq, threshold):
    from grm_jax.track.batched import load_frame

    t = Tracker(model, variables, None, threshold)
    t.initialize(load_frame(seq.frames[0]), seq.init_box)
    return np.asarray([seq.init_box] + [t.track(load_frame(f)) for f in seq.frames[1:]])


@pytest.mark.parametrize("batch_size, threshold, shrink", [(3, 0.0, True), (8, 0.4, True), (4, 0.0, False)])
def test_batched_equals_sequential(tiny_model, sequences, batch_size, threshold, shrink):
    model, variables = tiny_model
    results = track_sequences(model, variables, sequences, None, threshold, batch_size=batch_size, shrink=shrink)
    assert list(results) == [s.name for s in sequences]
    for seq in sequences:
        r = results[seq.name]
        expected = _one_by_one(model, variables, seq, threshold)
        assert r.boxes.shape == (len(seq.frames), 4) and r.times.shape == (len(seq.frames),)
        np.testing.assert_array_equal(r.boxes, expected, err_msg=seq.name)
        assert np.all(r.times >= 0)


def test_finish_order_and_progress(tiny_model, sequences):
    model, variables = tiny_model
    counted = []
    bt = BatchedTracker(model, variables, None, 0.0, batch_size=2)
    names = [r.name for r in bt.track(sequences, on_frames=counted.append)]
    assert sorted(names) == sorted(s.name for s in sequences)
    assert sum(counted) == sum(len(s.frames) for s in sequences)
    assert max(counted) <= 2


def test_errors(tiny_model, sequences):
    model, variables = tiny_model
    with pytest.raises(ValueError, match="batch_size"):
        BatchedTracker(model, variables, batch_size=0)
    bad = Seq("bad", sequences[0].frames, np.array([1.0, 2.0, 0.0, 5.0]))
    with pytest.raises(ValueError, match="'bad'.*w = 0.0"):
        track_sequences(model, variables, [bad], batch_size=2)
    missing = Seq("missing", ["/nonexistent/00001.jpg"], np.array([1.0, 2.0, 3.0, 5.0]))
    with pytest.raises(ValueError, match="missing frame file: /nonexistent/00001.jpg"):
        track_sequences(model, variables, [missing], batch_size=2)
