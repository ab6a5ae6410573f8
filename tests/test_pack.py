"""tfds/ArrayRecord packing: the packed reader gives exactly what the folder reader gives."""
import json
import os

import numpy as np
import pytest

from data_pipelines.pack import main as pack_main
from data_pipelines.pack import pack_source
from data_pipelines.pipeline import PairMaker, default_data_config, make_train_iterator
from data_pipelines.sources import PackedSource, SampleSource, ensure_sample_dataset, make_source


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("grm_pack")
    sample = ensure_sample_dataset(base / "sample")
    out = base / "packs" / "sample"  # <packed_dir>/<dataset name> convention
    assert pack_main(["--dataset", "sample", "--root", sample, "--out", str(out)]) == 0
    return sample, str(out)


def test_packed_layout_and_metadata(dirs):
    _, out = dirs
    meta = json.load(open(os.path.join(out, "grm_pack.json")))
    assert meta["name"] == "sample_train" and meta["is_video"] and meta["num_sequences"] == 8
    builder_dir = os.path.join(out, meta["builder_dir"])
    shards = [f for f in os.listdir(builder_dir) if ".array_record" in f]
    assert shards and os.path.isfile(os.path.join(builder_dir, "dataset_info.json"))
    assert meta["num_records"] == meta["num_frames"]


def test_packed_reader_identical(dirs):
    sample, out = dirs
    raw = SampleSource(sample)
    packed = make_source("sample", out)
    assert isinstance(packed, PackedSource)
    assert packed.sequence_names() == raw.sequence_names() and packed.is_video == raw.is_video
    for i in range(len(raw)):
        a, b = raw.sequence_info(i), packed.sequence_info(i)
        for k in ("boxes", "valid", "visible"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        for f in (0, a.num_frames // 2, a.num_frames - 1):
            assert raw.frame_bytes(i, f) == packed.frame_bytes(i, f)


def test_same_samples_packed_and_raw(dirs):
    sample, out = dirs
    c = default_data_config()
    c.datasets, c.ratios, c.num_workers, c.num_threads = ["sample"], [1.0], 0, 0
    c.sample_dir = sample
    raw_batches = [b for _, b in zip(range(3), make_train_iterator(c, 2, seed=4))]
    c.sample_dir = out  # a packed root is detected automatically
    c2 = default_data_config()
    c2.datasets, c2.ratios, c2.num_workers, c2.num_threads = ["sample"], [1.0], 0, 0
    c2.packed_dir = os.path.dirname(out)  # or: config.data.packed_dir/<name>
    for cfg in (c, c2):
        it = make_train_iterator(cfg, 2, seed=4)
        assert isinstance(PairMaker.from_config(cfg, 4).sampler.sources[0], PackedSource)
        for rb in raw_batches:
            pb = next(it)
            for k in rb:
                np.testing.assert_array_equal(rb[k], pb[k], err_msg=k)


def test_visible_only_pack(dirs, tmp_path):
    sample, _ = dirs
    raw = SampleSource(sample)
    packed = pack_source(raw, tmp_path / "vis", frames="visible", root=raw.root)
    meta = json.load(open(tmp_path / "vis" / "grm_pack.json"))
    assert meta["num_records"] < meta["num_frames"]
    for i in range(len(raw)):
        info = raw.sequence_info(i)
        f_vis = int(np.flatnonzero(info.visible)[-1])
        assert packed.frame_bytes(i, f_vis) == raw.frame_bytes(i, f_vis)
        f_inv = np.flatnonzero(~info.visible)
        if f_inv.size:
            with pytest.raises(ValueError, match="not stored"):
                packed.frame_bytes(i, int(f_inv[0]))
    with pytest.raises(FileExistsError):
        pack_source(raw, tmp_path / "vis")
