"""Hostile images, videos and settings (issues 17.2, 17.7, 18.6, 18.8): decompression bombs refused
from the header before decoding, odd but valid images tracked, broken videos named, absurd crop
factors and batch sizes refused before allocating, SIGTERM in track mode. Every test builds its
hostile input itself."""
import os
import pathlib
import struct
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, timeout_s
from convert_weights import convert_grm_checkpoint
from grm_jax import save_model
from grm_jax.cli import main
from grm_jax.errors import DataError
from grm_jax.image_check import MAX_IMAGE_PIXELS, image_size
from grm_jax.track.frames import FrameSource, read_image
from helpers import held_process, wait_for
from launch import TRAIN_PARTS

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = timeout_s(150)


def png_bomb(w: int, h: int) -> bytes:
    """A valid 8-bit grayscale PNG of w x h black pixels, about 1 MB for 30000 x 30000: one
    deflate block of 64 zero rows, flushed so that it can be repeated, then the remaining rows."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = 64
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = raw.compress(b"\0" * ((w + 1) * rows)) + raw.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = end.compress(b"\0" * ((w + 1) * (h % rows))) + end.flush()
    adler = (((w + 1) * h) % 65521) << 16 | 1  # adler32 of zero bytes: a = 1, b = count
    stream = b"\x78\xda" + piece * (h // rows) + tail + struct.pack(">I", adler)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", stream) + chunk(b"IEND", b""))


def jpeg_bomb(w: int, h: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims w x h pixels."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"))
    return save_model(tmp_path_factory.mktemp("model") / "grm_tiny", config, variables)


def _frames(folder: pathlib.Path, count: int = 3, h: int = 120, w: int = 160) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        (folder / f"{i:04d}.jpg").write_bytes(cv2.imencode(".jpg", rng.integers(0, 255, (h, w, 3), np.uint8))[1]
                                              .tobytes())
    return folder


def _track(model_dir, video, box, workdir, *extra):
    return main(["--config", "grm_tiny_cpu", "--mode=track", f"--checkpoint={model_dir}", f"--video={video}",
                 f"--init_box={box}", f"--workdir={workdir}", *extra])


def test_png_bomb_helper_is_a_real_image():
    small = png_bomb(300, 131)
    img = cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (131, 300) and img.max() == 0
    assert image_size(png_bomb(30000, 30000)) == (30000, 30000) and len(png_bomb(30000, 30000)) < 2_000_000


def test_decompression_bombs_refused_before_decoding(tmp_path, monkeypatch):
    """17.2: 30000x30000 PNG / JPEG (tiny on disk) refused naming the file and the limit; the
    decoder is never called."""
    def no_decode(*args, **kwargs):
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    for name, data in {"bomb.png": png_bomb(30000, 30000), "bomb.jpg": jpeg_bomb(30000, 30000)}.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataError, match=f"{path}: image of 30000x30000 pixels is larger than the limit of "
                                            f"{MAX_IMAGE_PIXELS:,} pixels"):
            read_image(path)
    monkeypatch.setenv("GRM_MAX_IMAGE_PIXELS", "100")
    (tmp_path / "small.png").write_bytes(png_bomb(11, 10))
    with pytest.raises(DataError, match="11x10 pixels is larger than the limit of 100 pixels"):
        read_image(tmp_path / "small.png")


def test_image_size_of_every_format():
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif"):
        data = cv2.imencode(ext, np.zeros((13, 17, 3), np.uint8))[1].tobytes()
        assert image_size(data) == (17, 13), ext
    assert image_size(b"GIF89a....") is None and image_size(b"") is None


def test_bomb_in_track_mode(tmp_path, model_dir, capfd):
    """18.6: a 30000x30000 PNG as the first frame stops track mode before the model loads; as a
    later frame it stops the run naming the file, with no broken pipe from the video encoder and
    no output or temporary file left."""
    for position in (0, 2):
        seq = _frames(tmp_path / f"seq{position}", 3)
        (seq / f"{position:04d}.jpg").unlink()
        (seq / f"{position:04d}.png").write_bytes(png_bomb(30000, 30000))
        out = tmp_path / f"out{position}"
        assert _track(model_dir, seq, "40,40,30,30", out) == 2
        err = capfd.readouterr().err
        assert f"error: {seq / f'{position:04d}.png'}: image of 30000x30000 pixels" in err, err
        assert "Broken pipe" not in err and "Traceback" not in err
        assert list(out.iterdir()) == []


def test_odd_but_valid_images_are_tracked(tmp_path, model_dir):
    """17.2: 1x1 frames, grayscale, 16-bit and CMYK images are tracked (decoded to 8-bit RGB)."""
    rng = np.random.default_rng(1)
    cases = {
        "one_pixel": ([np.full((1, 1, 3), 90, np.uint8)] * 3, ".png", "0,0,1,1"),
        "gray": ([rng.integers(0, 255, (120, 160), np.uint8)] * 3, ".png", "40,40,30,30"),
        "sixteen": ([rng.integers(0, 65535, (120, 160, 3)).astype(np.uint16)] * 3, ".png", "40,40,30,30"),
        "cmyk": ([rng.integers(0, 255, (120, 160, 4), np.uint8)] * 3, ".jpg", "40,40,30,30"),
    }
    for name, (images, ext, box) in cases.items():
        seq = tmp_path / name
        seq.mkdir()
        for i, im in enumerate(images):
            path = seq / f"{i:04d}{ext}"
            if name == "cmyk":
                Image.fromarray(im, "CMYK").save(path)
            else:
                path.write_bytes(cv2.imencode(ext, im)[1].tobytes())
        first = read_image(next(iter(sorted(seq.iterdir()))))
        assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3, name
        out = tmp_path / f"out_{name}"
        assert _track(model_dir, seq, box, out) == 0, name
        boxes = np.loadtxt(out / "boxes.txt", delimiter=",", ndmin=2)
        assert boxes.shape == (3, 4) and np.isfinite(boxes).all(), name


def test_broken_videos_and_folders(tmp_path, capfd):
    """17.2: an empty frames folder, a 0-frame video, a text file renamed .mp4 and a video whose
    name is not UTF-8 (OpenCV would crash on it) each give one line naming the path."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.mp4").write_text("not a video\n")
    writer = cv2.VideoWriter(str(tmp_path / "zero.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    writer.release()
    bad_name = tmp_path / os.fsdecode(b"clip\xff.mp4")
    bad_name.write_bytes((tmp_path / "zero.mp4").read_bytes())
    capfd.readouterr()
    expected = {tmp_path / "empty": f"no image files (.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp) in folder: "
                                    f"{tmp_path / 'empty'}",
                tmp_path / "text.mp4": f"cannot open video file (not a video that OpenCV / ffmpeg can read, or it "
                                       f"holds no frame): {tmp_path / 'text.mp4'}",
                tmp_path / "zero.mp4": "cannot open video file",
                bad_name: "video file name is not UTF-8"}
    for path, message in expected.items():
        with pytest.raises(DataError) as err:
            FrameSource(path)
        assert message in str(err.value)
    assert capfd.readouterr().err == ""  # ffmpeg's own 'moov atom not found' is not printed


def test_absurd_search_factor_refused(tmp_path, model_dir, capfd):
    """18.6: --config.track.search_factor=10000 would need a 300000x300000 crop (251 GiB): one line
    naming the setting, nothing allocated, no output."""
    seq = _frames(tmp_path / "seq", 2)
    out = tmp_path / "out"
    assert _track(model_dir, seq, "40,40,30,30", out, "--config.track.search_factor=10000") == 2
    err = capfd.readouterr().err
    assert "error: track.search_factor=10000: the crop around the 30x30 box would be 300000x300000 pixels" in err
    assert "Traceback" not in err and list(out.iterdir()) == []


def test_absurd_batch_size_refused_before_allocating(tmp_path, capfd):
    """17.7 / 18.6: train batch_size=100000 is refused at once, naming the setting and the memory."""
    from train_utils import data_overrides

    # the tiny model's crops (128 / 256 px): the bound alone is ~300 GiB, beyond any test machine
    code = main(["--config", "grm_tiny_cpu", "--workdir", str(tmp_path / "run"), *data_overrides(tmp_path / "sample"),
                 "--config.train.batch_size=100000", "--config.train.max_steps=1"], train_parts=TRAIN_PARTS)
    err = capfd.readouterr().err
    assert code == 2, err
    assert "error: config.train.batch_size=100000: one training step needs at least" in err, err
    assert "are available" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


HELD_TRACK = """
import os, pathlib, runpy, sys, time
from grm_jax.track import tracker
real, hold = tracker.Tracker.track, pathlib.Path(os.environ["HOLD_FILE"])
def track(self, *args, **kwargs):
    out = real(self, *args, **kwargs)
    pathlib.Path(os.environ["DONE_FILE"]).touch()
    while hold.exists():
        time.sleep(0.05)
    return out
tracker.Tracker.track = track
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.multiprocess
def test_sigterm_during_track_leaves_nothing(tmp_path, model_dir):
    """18.8: SIGTERM while track mode writes tracked.mp4: exit 143 with one line, no hidden
    ``.tracked.<hex>.tmp.mp4`` and no partial output."""
    seq = _frames(tmp_path / "seq", 4)
    out, hold, done = tmp_path / "out", tmp_path / "hold", tmp_path / "done"
    hold.touch()
    cmd = [sys.executable, "-c", HELD_TRACK, "launch.py", "--config", "configs/grm_tiny_cpu.py", "--mode=track",
           f"--checkpoint={model_dir}", f"--video={seq}", "--init_box=40,40,30,30", f"--workdir={out}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", HOLD_FILE=str(hold), DONE_FILE=str(done))
    with held_process(cmd, cwd=REPO, env=env) as proc:
        wait_for(proc, done.exists, TIMEOUT)
        assert [p.name for p in out.iterdir()][0].startswith(".tracked.")  # the video is being written
        proc.terminate()
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM during --mode=track"), err[-3000:]
    assert "Traceback" not in err and "Broken pipe" not in err
    assert list(out.iterdir()) == []
