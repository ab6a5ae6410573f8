"""Pair sampler: visibility rules, causal frame order and gap, dataset ratios, determinism."""
import numpy as np
import pytest

from data_pipelines.sampler import PairSampler, sample_visible_id
from grm_jax.datasets.source import Source, make_info


class FakeSource(Source):
    """In-memory source: ``visibles`` is a list of (N,) bool arrays."""

    def __init__(self, name, visibles, is_video=True):
        super().__init__()
        self.name = name
        self.is_video = is_video
        self._vis = [np.asarray(v, bool) for v in visibles]
        self._names = [f"{name}_{i}" for i in range(len(visibles))]

    def _sequence_names(self):
        return self._names

    def _read_sequence_info(self, i):
        n = self._vis[i].shape[0]
        boxes = np.tile(np.asarray([[1, 2, 10, 10]], np.float32), (n, 1))
        boxes[:, 0] = np.arange(n)
        return make_info(boxes, self._vis[i])

    def frame_path(self, i, f):
        return f"{self.name}/{i}/{f}"


def _random_visibility(rng, n_seq, lo=20, hi=400, p=0.6):
    return [rng.random(int(rng.integers(lo, hi))) < p for _ in range(n_seq)]


def test_sample_visible_id_range():
    vis = np.array([0, 1, 0, 1, 1, 0], bool)
    rng = np.random.default_rng(0)
    got = {sample_visible_id(vis, rng, 2, 5) for _ in range(200)}
    assert got == {3, 4}
    assert sample_visible_id(vis, rng, 5, 100) is None
    assert sample_visible_id(vis, rng, -10, 2) == 1


def test_never_samples_invisible_and_causal_gap():
    rng = np.random.default_rng(0)
    vis = _random_visibility(rng, 30)
    vis.append(np.zeros(50, bool))  # never usable
    vis.append(np.r_[np.ones(3, bool), np.zeros(40, bool)])  # only 3 visible frames: rejected
    src = FakeSource("v", vis)
    max_gap = 10
    sampler = PairSampler([src], max_gap=max_gap)
    widened = 0
    for k in range(3000):
        p = sampler.sample(np.random.default_rng([7, k]))
        v = vis[p.sequence]
        assert p.sequence < 30
        assert v[p.template_frame] and v[p.search_frame]
        assert p.template_frame < p.search_frame
        assert p.template_frame < len(v) - 1
        widened += p.search_frame - p.template_frame >= max_gap
        np.testing.assert_array_equal(p.template_box[0], p.template_frame)
        np.testing.assert_array_equal(p.search_box[0], p.search_frame)
    # window widening by 5 is used sometimes but most pairs are inside (t, t + max_gap)
    assert widened < 3000 * 0.2


def test_gap_widens_when_needed():
    # visible frames only at 0 and 40..59 and 99: with max_gap 10 the first tries can fail from base 0
    v = np.zeros(100, bool)
    v[[0, 99]] = True
    v[40:60] = True
    sampler = PairSampler([FakeSource("g", [v])], max_gap=10)
    seen_long = False
    for k in range(500):
        p = sampler.sample(np.random.default_rng([1, k]))
        assert v[p.template_frame] and v[p.search_frame] and p.search_frame > p.template_frame
        seen_long |= p.search_frame - p.template_frame >= 10
    assert seen_long


def test_image_dataset_uses_same_frame_and_ignores_visibility():
    # official: ``enough_visible_frames or not is_video_dataset`` -> every image sequence is drawn
    vis = [[True], [False], [True], [False]]
    sampler = PairSampler([FakeSource("img", vis, is_video=False)])
    seen = set()
    for k in range(200):
        p = sampler.sample(np.random.default_rng([3, k]))
        assert p.template_frame == p.search_frame == 0
        seen.add(p.sequence)
    assert seen == {0, 1, 2, 3}


def test_first_try_gap_is_at_most_max_gap_minus_one():
    # every frame visible: the first try always succeeds, so the gap is 1 .. max_gap - 1 (half-open range)
    max_gap = 6
    sampler = PairSampler([FakeSource("g", [np.ones(40, bool)])], max_gap=max_gap)
    gaps = {p.search_frame - p.template_frame for p in
            (sampler.sample(np.random.default_rng([9, k])) for k in range(2000))}
    assert gaps == set(range(1, max_gap))


def test_dataset_ratios():
    rng = np.random.default_rng(1)
    srcs = [FakeSource(f"d{j}", _random_visibility(rng, 5)) for j in range(3)]
    ratios = [1.0, 2.0, 1.0]
    sampler = PairSampler(srcs, ratios, max_gap=200)
    n = 4000
    counts = np.bincount([sampler.choose_dataset(np.random.default_rng([11, k])) for k in range(n)], minlength=3)
    expected = np.asarray(ratios) / sum(ratios) * n
    # binomial std ~ 27-32: allow 4 sigma
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected)), counts


def test_determinism():
    rng = np.random.default_rng(2)
    srcs = [FakeSource("a", _random_visibility(rng, 10)), FakeSource("b", [[True]] * 4, is_video=False)]
    s1 = PairSampler(srcs, [1, 1])
    s2 = PairSampler(srcs, [1, 1])
    a = [s1.sample(np.random.default_rng([5, k])) for k in range(50)]
    b = [s2.sample(np.random.default_rng([5, k])) for k in reversed(range(50))][::-1]
    for x, y in zip(a, b):
        assert (x.dataset, x.sequence, x.template_frame, x.search_frame) == \
               (y.dataset, y.sequence, y.template_frame, y.search_frame)
    c = [s1.sample(np.random.default_rng([6, k])) for k in range(50)]
    assert any((x.sequence, x.search_frame) != (z.sequence, z.search_frame) for x, z in zip(a, c))


def test_bad_arguments():
    src = FakeSource("a", [np.ones(30, bool)])
    with pytest.raises(ValueError, match="ratios"):
        PairSampler([src], [1.0, 2.0])
    with pytest.raises(ValueError, match="no sources"):
        PairSampler([])
    with pytest.raises(RuntimeError, match="no usable sequence"):
        PairSampler([FakeSource("z", [np.zeros(30, bool)])], max_sequence_tries=50).sample(np.random.default_rng(0))
