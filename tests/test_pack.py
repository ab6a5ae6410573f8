"""tfds/ArrayRecord packing: the packed reader gives exactly what the folder reader gives."""
import json
import os

import numpy as np
import pytest

from data_pipelines.pack import main as pack_main
from data_pipelines.pack import pack_source
from data_pipelines.pipeline import PairMaker, make_train_iterator
from grm_jax.datasets import PackedSource, training_source
from grm_jax.datasets.sample import SampleSource
from grm_jax.datasets.sample_generator import ensure_sample_dataset
from grm_jax.errors import ConfigError, DataError
from grm_jax.run_config import CropSpec, DataConfig, RunConfig
from helpers import sequence_names


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("grm_pack")
    sample = ensure_sample_dataset(base / "sample")
    out = base / "packs" / "sample_train"  # <packed_dir>/<dataset name> convention
    assert pack_main(["--dataset", "sample_train", "--root", sample, "--out", str(out)]) == 0
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
    packed = training_source("sample_train", out)
    assert isinstance(packed, PackedSource)
    with pytest.raises(DataError, match="holds 'sample_train', but 'got10k_train_all' was requested"):
        training_source("got10k_train_all", out)
    assert sequence_names(packed) == sequence_names(raw) and packed.is_video == raw.is_video
    for i in range(len(raw)):
        a, b = raw.sequence_info(i), packed.sequence_info(i)
        for k in ("boxes", "valid", "visible"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        for f in (0, a.num_frames // 2, a.num_frames - 1):
            assert raw.frame_bytes(i, f) == packed.frame_bytes(i, f)


def test_same_samples_packed_and_raw(dirs):
    sample, out = dirs
    def run(**data):
        return RunConfig(data=DataConfig(datasets=("sample_train",), ratios=(1.0,), num_workers=0, **data))

    raw_batches = [b for _, b in zip(range(3), make_train_iterator(run(roots={"sample": sample}), 2, seed=4,
                                                                    num_threads=0))]
    by_root = run(roots={"sample": out})  # a packed root is detected automatically
    by_packed_dir = run(roots={"sample": sample}, packed_dir=os.path.dirname(out))  # or: packed_dir/<name>
    for cfg in (by_root, by_packed_dir):
        it = make_train_iterator(cfg, 2, seed=4, num_threads=0)
        assert isinstance(PairMaker.from_run(cfg, 4).sampler.sources[0], PackedSource)
        for rb in raw_batches:
            pb = next(it)
            for k in rb:
                np.testing.assert_array_equal(rb[k], pb[k], err_msg=k)


def test_reduced_decode_same_samples_packed_and_raw(dirs):
    """data.reduced_decode reads packed frames like folder frames (same bytes, same 1/k decodes)."""
    sample, out = dirs
    template, search = CropSpec(2.0, 32), CropSpec(4.0, 64, 3.0, 0.25)  # small crops: the sample's boxes reduce

    def samples(source, reduced):
        maker = PairMaker([source], [1.0], template, search, max_gap=200, seed=2, reduced_decode=reduced)
        return [maker(i) for i in range(8)]

    raw, packed = samples(SampleSource(sample), True), samples(training_source("sample_train", out), True)
    exact = samples(SampleSource(sample), False)
    assert any(not np.array_equal(a["search"], b["search"]) for a, b in zip(raw, exact))  # frames were reduced
    for a, b in zip(raw, packed):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


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


def test_pack_names(tmp_path):
    """--dataset takes training-set names of the registry only ('sample' is an alias of sample_train)."""
    with pytest.raises(ConfigError, match="'lasot' is a benchmark, not a training set"):
        pack_main(["--dataset", "lasot", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(ConfigError, match="unknown dataset 'got10k'"):
        pack_main(["--dataset", "got10k", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
