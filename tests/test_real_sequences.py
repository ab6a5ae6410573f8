"""End-to-end tracking on the real camera sequences (read in place, never copied) with the tiny model.

The tiny model has random weights, so only sanity is checked: every frame gets a finite box that
lies inside the image, and the sequence is tracked through (batched, all sequences together). The
tracking itself is conftest's ``real_tracks`` (once per test run, shared with test_attention_fused).
"""
import numpy as np
import pytest

from grm_jax.datasets import load_benchmark
from grm_jax.track.frames import read_image

pytestmark = [pytest.mark.slow]


def test_track_all_real_sequences(real_sequences, real_tracks):
    seqs = load_benchmark("folder", real_sequences)
    assert len(seqs) >= 1
    results, elapsed = real_tracks
    assert list(results) == [s.name for s in seqs]
    total = sum(len(s) for s in seqs)
    print(f"\n{len(seqs)} sequences, {total} frames in {elapsed:.1f} s ({total / elapsed:.1f} frames/s)")
    for s in seqs:
        r = results[s.name]
        boxes = r.boxes
        assert boxes.shape == (len(s), 4), s.name
        assert np.isfinite(boxes).all(), s.name
        np.testing.assert_array_equal(boxes[0], s.ground_truth[0])
        H, W = read_image(s.frames[0]).shape[:2]
        x, y, w, h = boxes[1:].T
        assert (w >= 10).all() and (h >= 10).all(), s.name
        assert (x >= 0).all() and (y >= 0).all(), s.name
        assert (x + w <= W + 1e-9).all() and (y + h <= H + 1e-9).all(), s.name
        assert np.isfinite(r.times).all() and (r.times > 0).all()
