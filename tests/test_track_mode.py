"""--mode=track outputs: written together or not at all, with the umask's permissions, into a
workdir checked first; a video browsers play; a legible division overlay; a progress bar."""
import json
import os
import pathlib
import stat

import cv2
import numpy as np
import pytest

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.configuration import load_run_config
from grm_jax.errors import DataError, WorkdirError
from grm_jax.evaluate import runner
from grm_jax.io_utils import AtomicFiles, atomic_write_bytes, ensure_writable_dir
from grm_jax.model import GRM
from grm_jax.track import video as vid

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frames():
    return np.load(FIXTURES / "track_tiny" / "frames.npz")["frames"]  # (30, 240, 320, 3) RGB


@pytest.fixture(scope="module")
def tiny():
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
    return GRM(config), variables


@pytest.fixture(scope="module")
def run():
    return load_run_config(str(REPO / "configs" / "grm_tiny_cpu.py"))


def _folder(path, images):
    path.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images, start=1):
        cv2.imwrite(str(path / f"{i:05d}.jpg"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return path


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, frames, tiny, run):
    """One successful run with the division overlay, the progress bar forced on, umask 027."""
    root = tmp_path_factory.mktemp("track")
    seq = _folder(root / "seq", frames[:6])
    old = os.umask(0o027)
    try:
        result = runner.run_track(run, "unused", str(seq), "130,100,40,32", str(root / "out"), show_division=True,
                                  overlay_layers=["1", "3"], model_and_variables=tiny, progress=True)
    finally:
        os.umask(old)
    return root, result


def test_outputs_and_formats(tracked):
    root, r = tracked
    out = root / "out"
    assert sorted(p.name for p in out.iterdir()) == ["boxes.txt", "division.json", "summary.json", "tracked.mp4"]
    lines = (out / "boxes.txt").read_text().splitlines()
    assert len(lines) == 6 and lines[0] == "130.0000,100.0000,40.0000,32.0000"
    division = json.loads((out / "division.json").read_text())
    assert division["layers"] == [1, 3] and division["frame_index"] == [1, 2, 3, 4, 5]
    assert np.asarray(division["ea_fraction"]).shape == (5, 2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and summary["frames_expected"] == 6 and not summary["video_ended_early"]
    assert summary["codec"] == r["codec"] and r["boxes"].shape == (6, 4)


def test_outputs_follow_the_umask(tracked, tmp_path):
    root, _ = tracked
    for name in ("boxes.txt", "division.json", "summary.json", "tracked.mp4"):
        assert _mode(root / "out" / name) == 0o640, name  # 0o666 & ~0o027, not mkstemp's 0o600
    old = os.umask(0o002)
    try:
        atomic_write_bytes(tmp_path / "a.txt", b"x")
        with AtomicFiles() as files:
            files.write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o664 and _mode(tmp_path / "b.json") == 0o664


def test_failed_run_leaves_the_previous_outputs(tracked, tmp_path, frames, tiny, run):
    root, _ = tracked
    out = tmp_path / "out"
    out.mkdir()
    for name in ("boxes.txt", "division.json", "summary.json", "tracked.mp4"):
        (out / name).write_bytes((root / "out" / name).read_bytes())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    seq = _folder(tmp_path / "broken", frames[:8])
    (seq / "00006.jpg").write_bytes((seq / "00006.jpg").read_bytes()[:-300])  # fails mid-sequence
    with pytest.raises(DataError, match="00006.jpg"):
        runner.run_track(run, "unused", str(seq), "130,100,40,32", str(out), model_and_variables=tiny)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no partial video, no temporaries
    # a successful run without the overlay replaces the outputs and drops the stale division.json
    good = _folder(tmp_path / "good", frames[:3])
    runner.run_track(run, "unused", str(good), "130,100,40,32", str(out), model_and_variables=tiny,
                     write_video=False)
    assert sorted(p.name for p in out.iterdir()) == ["boxes.txt", "summary.json"]


def test_workdir_checked_before_anything_else(tmp_path, frames, run):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(WorkdirError, match="file.txt: exists and is not a folder"):
        ensure_writable_dir(a_file)
    with pytest.raises(WorkdirError, match="cannot write there"):
        ensure_writable_dir(a_file / "sub")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        target = locked if not os.access(locked, os.W_OK) else pathlib.Path("/sys/kernel")  # root writes anywhere
        with pytest.raises(WorkdirError, match=f"{target}: cannot write there"):
            ensure_writable_dir(target)
    finally:
        locked.chmod(0o755)
    assert ensure_writable_dir(tmp_path / "new" / "dir").is_dir()
    # both modes refuse it before reading a model ("no_such_model" would raise another error)
    seq = _folder(tmp_path / "seq", frames[:2])
    with pytest.raises(WorkdirError, match="sub: cannot write there"):
        runner.run_track(run, str(tmp_path / "no_such_model"), str(seq), "130,100,40,32", str(a_file / "sub"))
    bench = tmp_path / "bench"
    _folder(bench / "s1", frames[:2])
    (bench / "s1" / "groundtruth.txt").write_text("130,100,40,32\n130,100,40,32\n")
    with pytest.raises(WorkdirError, match="sub: cannot write there"):
        runner.run_evaluate(run, str(tmp_path / "no_such_model"), f"folder:{bench}", str(a_file / "sub"))


def test_video_codec_plays_in_browsers(tmp_path, frames, monkeypatch):
    path = tmp_path / "clip.mp4"
    with vid.VideoWriter(path, fps=10) as w:
        for f in frames[:4]:
            w.write(f[:239, :319])  # odd sides are padded to even ones
    assert w.codec in vid.BROWSER_CODECS  # H.264: OpenCV's encoder or imageio-ffmpeg's
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    got = []
    while (item := cap.read())[0]:
        got.append(item[1])
    cap.release()
    assert fourcc in ("avc1", "h264") and len(got) == 4 and got[0].shape == (240, 320, 3)
    # without an H.264 encoder: MPEG-4 Part 2 with a warning that browsers will not play it
    monkeypatch.setattr(vid, "codec_works", lambda codec: False)
    with pytest.warns(UserWarning, match="browsers do not play"):
        w = vid.VideoWriter(tmp_path / "fallback.mp4", fps=10)
    assert w.codec == "mp4v"


def test_division_panel_legible_on_small_frames(frames):
    small = cv2.resize(frames[0], (128, 96), interpolation=cv2.INTER_AREA)  # OTB Girl's size
    crop = cv2.resize(frames[0], (256, 256))
    rng = np.random.default_rng(0)
    layers = list(range(1, 12))  # ViT-B GRM: 11 dividing blocks
    dec = rng.random((11, 256)) < 0.5
    img = vid.render_frame(small, [40, 30, 30, 20], 7, search_box_xywh=[40, 30, 30, 20], search_crop=crop,
                           decisions=dec, layers=layers)
    assert img.shape[0] >= vid.MIN_PANEL_HEIGHT and img.shape[0] == 3 * 96  # enlarged 3x
    panel = img[:, 3 * 128:]
    tile = img.shape[0] // 3  # 11 tiles: 4 columns x 3 rows
    assert panel.shape[1] == 4 * tile
    for c in range(1, 5):  # the gap at the right edge of every tile column stays black: labels fit their tile
        assert not panel[:, c * tile - 2:c * tile].any()
    label_rows = panel[:tile // 4, :tile - 2]
    assert (label_rows == 255).all(axis=-1).sum() > 20  # white label text is drawn
    # without the overlay, frames keep their size
    assert vid.render_frame(small, [40, 30, 30, 20], 7).shape == (96, 128, 3)


def test_progress_bar_shows_frames(tmp_path, frames, tiny, run, capsys):
    seq = _folder(tmp_path / "seq", frames[:3])
    runner.run_track(run, "unused", str(seq), "130,100,40,32", str(tmp_path / "out"), model_and_variables=tiny,
                     write_video=False, progress=True)
    err = capsys.readouterr().err
    assert "track:" in err and "/3 [" in err and "frame/s" in err  # frames done of 3, rate


def test_damaged_video_counted_in_the_summary(tmp_path, tiny, run):
    from test_bad_frames import _damaged_mp4  # noqa: PLC0415

    path = _damaged_mp4(tmp_path / "damaged.mp4")
    r = runner.run_track(run, "unused", str(path), "10,10,20,20", str(tmp_path / "out"), model_and_variables=tiny,
                         write_video=False)
    assert r["video_ended_early"] and r["frames_expected"] == 60 and 0 < r["frames"] < 60
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["video_ended_early"] and summary["frames"] == r["frames"]
