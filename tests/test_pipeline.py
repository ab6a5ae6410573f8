"""grain pipeline on the bundled sample dataset: batches, reproducibility, resume, sharding, bad files."""
import os
import shutil
import warnings

import numpy as np
import pytest

from data_pipelines.pipeline import make_train_iterator
from grm_jax.configuration import load_run_config
from grm_jax.datasets.sample_generator import ensure_sample_dataset

B = 2


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return ensure_sample_dataset(tmp_path_factory.mktemp("grm_sample") / "sample")


def _cfg(sample_dir, *overrides):
    """The run config of these tests: GRM (ViT-B 256) crops, the sample data at ``sample_dir``."""
    return load_run_config("grm_got", ["data.datasets=sample_train", "data.ratios=[1.0]",
                                       f"data.roots.sample={sample_dir}", "data.num_workers=0",
                                       "data.num_threads=2", *overrides])


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_batch_shapes_and_dtypes(sample_dir):
    it = make_train_iterator(_cfg(sample_dir), B, seed=0)
    b = next(it)
    expect = {
        "template": ((B, 128, 128, 3), np.float32), "search": ((B, 256, 256, 3), np.float32),
        "template_box": ((B, 4), np.float32), "search_box": ((B, 4), np.float32),
        "template_att": ((B, 128, 128), np.bool_), "search_att": ((B, 256, 256), np.bool_),
        "heatmap": ((B, 16, 16), np.float32), "dataset": ((B,), np.int32), "index": ((B,), np.int64),
        "skipped_images": ((B,), np.int32),
    }
    assert set(b) == set(expect)
    for k, (shape, dt) in expect.items():
        assert b[k].shape == shape and b[k].dtype == dt, k
    assert np.all(np.isfinite(b["search"])) and np.all(b["heatmap"] <= 1.0)
    assert np.all(b["search_box"][:, 2:] > 0)
    np.testing.assert_array_equal(b["index"], [0, 1])


def test_other_sizes_from_config(sample_dir):
    c = _cfg(sample_dir, "model.search_size=320", "track.search_factor=5.0")
    b = next(make_train_iterator(c, 1, seed=3))
    assert b["search"].shape == (1, 320, 320, 3) and b["heatmap"].shape == (1, 20, 20)


def test_same_seed_same_batches(sample_dir):
    a = _take(make_train_iterator(_cfg(sample_dir), B, seed=5), 3)
    b = _take(make_train_iterator(_cfg(sample_dir), B, seed=5, num_threads=0), 3)
    c = _take(make_train_iterator(_cfg(sample_dir), B, seed=6), 3)
    assert all(_same(x, y) for x, y in zip(a, b))
    assert not any(np.array_equal(x["search"], z["search"]) for x, z in zip(a, c))


def test_state_save_restore(sample_dir):
    it = make_train_iterator(_cfg(sample_dir), B, seed=1)
    _take(it, 2)
    state = it.get_state()
    after = _take(it, 2)
    it2 = make_train_iterator(_cfg(sample_dir), B, seed=1)
    it2.set_state(state)
    resumed = _take(it2, 2)
    assert all(_same(x, y) for x, y in zip(after, resumed))
    np.testing.assert_array_equal(resumed[0]["index"], [4, 5])


def test_shards_disjoint_and_consistent(sample_dir):
    cfg = _cfg(sample_dir)
    s0 = _take(make_train_iterator(cfg, B, seed=2, shard_index=0, shard_count=2), 2)
    s1 = _take(make_train_iterator(cfg, B, seed=2, shard_index=1, shard_count=2), 2)
    i0 = np.concatenate([b["index"] for b in s0])
    i1 = np.concatenate([b["index"] for b in s1])
    assert not set(i0) & set(i1)
    assert sorted(np.concatenate([i0, i1]).tolist()) == list(range(8))
    # the global batch does not depend on how it is split over hosts
    whole = next(make_train_iterator(cfg, 2 * B, seed=2))
    for k in whole:
        np.testing.assert_array_equal(whole[k], np.concatenate([s0[0][k], s1[0][k]]), err_msg=k)
    with pytest.raises(ValueError, match="shard_index"):
        make_train_iterator(cfg, B, seed=2, shard_index=2, shard_count=2)


def test_corrupt_images_skipped_with_warning(sample_dir, tmp_path):
    bad = tmp_path / "bad_sample"
    shutil.copytree(sample_dir, bad)
    bad_seqs = [f"GOT-10k_Train_00000{k}" for k in (1, 2, 3, 4)]
    for name in bad_seqs:
        for f in os.listdir(bad / "train" / name):
            if f.endswith(".jpg"):
                (bad / "train" / name / f).write_bytes(b"\xff\xd8garbage")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        batches = _take(make_train_iterator(_cfg(bad), 4, seed=0, num_threads=0), 4)
    skipped = int(sum(b["skipped_images"].sum() for b in batches))
    assert skipped > 0
    msgs = [str(w.message) for w in rec if "unreadable" in str(w.message)]
    assert len(msgs) == skipped and all(any(n in m for n in bad_seqs) for m in msgs)
    for b in batches:
        assert np.all(np.isfinite(b["search"]))


def test_worker_process_matches_in_process(sample_dir):
    cfg = _cfg(sample_dir)
    ref = _take(make_train_iterator(cfg, B, seed=9), 3)
    it = make_train_iterator(cfg, B, seed=9, num_workers=1)
    try:
        first = next(it)
        state = it.get_state()
        rest = _take(it, 2)
    finally:
        it.close()
    assert _same(first, ref[0]) and all(_same(x, y) for x, y in zip(rest, ref[1:]))
    it2 = make_train_iterator(cfg, B, seed=9, num_workers=1)
    try:
        it2.set_state(state)
        assert _same(next(it2), ref[1])
    finally:
        it2.close()
