"""Result files and submissions (grm_jax/evaluate/results.py)."""
import zipfile

import numpy as np
import pytest

from grm_jax.evaluate import results as R


def test_write_read_int_truncation(tmp_path):
    boxes = np.array([[10.9, 20.2, 30.999, 40.5], [-1.7, 0.0, 5.5, 6.0]])
    path = R.write_results(tmp_path, "seq", boxes, times=[0.1, 0.02])
    assert path == tmp_path / "seq.txt"
    assert path.read_text() == "10\t20\t30\t40\n-1\t0\t5\t6\n"  # truncation toward zero, like '%d'
    np.testing.assert_array_equal(R.read_results(path), [[10, 20, 30, 40], [-1, 0, 5, 6]])
    np.testing.assert_allclose(R.read_times(tmp_path / "seq_time.txt"), [0.1, 0.02])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no leftovers


def test_write_float_and_separators(tmp_path):
    boxes = np.array([[1.23456, 2.0, 3.5, 4.25]])
    R.write_results(tmp_path, "f", boxes, fmt="float")
    assert (tmp_path / "f.txt").read_text() == "1.2346\t2.0000\t3.5000\t4.2500\n"
    (tmp_path / "c.txt").write_text("1,2,3,4\n5.5 6 7 8\n9\t10\t11\t12\n")
    np.testing.assert_array_equal(R.read_results(tmp_path / "c.txt"), [[1, 2, 3, 4], [5.5, 6, 7, 8], [9, 10, 11, 12]])


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        R.write_results(tmp_path, "s", np.zeros((2, 4)), fmt="hex")
    with pytest.raises(ValueError, match="non-finite box at frame 1"):
        R.write_results(tmp_path, "s", np.array([[1, 2, 3, 4], [np.nan, 1, 1, 1]]))
    with pytest.raises(ValueError, match="2 boxes but 3 times"):
        R.write_results(tmp_path, "s", np.zeros((2, 4)), times=[1, 2, 3])
    with pytest.raises(ValueError, match="missing file"):
        R.read_results(tmp_path / "nope.txt")
    assert not (tmp_path / "s.txt").exists()


def test_is_complete(tmp_path):
    assert not R.is_complete(tmp_path, "s")
    R.write_results(tmp_path, "s", np.ones((3, 4)))
    assert R.is_complete(tmp_path, "s")
    assert R.is_complete(tmp_path, "s", num_frames=3)
    assert not R.is_complete(tmp_path, "s", num_frames=4)
    assert not R.is_complete(tmp_path, "s", require_time=True)
    R.write_results(tmp_path, "s", np.ones((3, 4)), times=np.full(3, 0.01))
    assert R.is_complete(tmp_path, "s", num_frames=3, require_time=True)


def test_got10k_submission(tmp_path):
    res = tmp_path / "res"
    R.write_results(res, "GOT-10k_Test_000001", np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), times=[0.5, 0.25])
    zpath = R.write_got10k_submission(res, ["GOT-10k_Test_000001"], tmp_path / "sub", zip_path=tmp_path / "sub.zip")
    assert (tmp_path / "sub" / "GOT-10k_Test_000001" / "GOT-10k_Test_000001_001.txt").read_text() == "1,2,3,4\n5,6,7,8\n"
    assert (tmp_path / "sub" / "GOT-10k_Test_000001" / "GOT-10k_Test_000001_time.txt").is_file()
    with zipfile.ZipFile(zpath) as zf:
        assert sorted(zf.namelist()) == ["GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt",
                                         "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt"]
    with pytest.raises(ValueError, match="missing result file"):
        R.write_got10k_submission(res, ["other"], tmp_path / "sub2")
    R.write_results(res, "notime", np.ones((2, 4)))
    with pytest.raises(ValueError, match="missing time file"):
        R.write_got10k_submission(res, ["notime"], tmp_path / "sub3")


def test_trackingnet_submission(tmp_path):
    res = tmp_path / "res"
    R.write_results(res, "a", np.array([[1.7, 2, 3, 4]]))
    R.write_results(res, "b", np.array([[5, 6, 7, 8]]))
    zpath = R.write_trackingnet_submission(res, ["a", "b"], tmp_path / "tn.zip")
    with zipfile.ZipFile(zpath) as zf:
        assert sorted(zf.namelist()) == ["a.txt", "b.txt"]
        assert zf.read("a.txt").decode() == "1,2,3,4\n"


def test_score_time_rejects_inf_and_mismatched_time_files(tmp_path):
    """Scoring refuses an infinite coordinate (naming file and line) and a time file whose row
    count differs from the box file (naming both counts)."""
    from grm_jax.datasets import Sequence
    from grm_jax.errors import DataError
    from helpers import score_results

    seq = Sequence("s", ["a.jpg", "b.jpg"], np.array([[1, 2, 3, 4], [1, 2, 3, 4]], float), "folder")
    res = tmp_path / "res"
    res.mkdir()
    (res / "s.txt").write_text("1\t2\t3\t4\n1\t2\tinf\t4\n")
    with pytest.raises(DataError, match=r"s\.txt, line 2: infinite value"):
        score_results([seq], res, tmp_path / "out", "t", plots=False)
    (res / "s.txt").write_text("1\t2\t3\t4\n1\t2\t3\t4\n")
    (res / "s_time.txt").write_text("0.1\n")
    with pytest.raises(DataError, match=r"s_time\.txt: 1 times but 2 boxes in .*s\.txt"):
        score_results([seq], res, tmp_path / "out", "t", plots=False)
    with pytest.raises(DataError, match="1 times but 2 boxes"):
        R.write_got10k_submission(res, ["s"], tmp_path / "sub")


def test_bad_frames_file(tmp_path):
    assert R.read_bad_frames(tmp_path, "s") == []
    path = R.write_bad_frames(tmp_path, "s", [(3, "cannot read image: /x/00004.jpg")])
    assert path.name == "s_bad_frames.json" and path.name.endswith(R.SEQUENCE_FILE_SUFFIXES[2])
    assert R.read_bad_frames(tmp_path, "s") == [{"frame": 3, "error": "cannot read image: /x/00004.jpg"}]
    R.write_bad_frames(tmp_path, "s", [])  # a later clean attempt removes the old list
    assert not path.exists() and R.read_bad_frames(tmp_path, "s") == []
    path.write_text("{")
    with pytest.raises(ValueError, match="s_bad_frames.json: not a bad-frames file"):
        R.read_bad_frames(tmp_path, "s")
