"""Damaged input never passes silently: truncated images, damaged videos, frames of another size,
and init boxes that are outside the image, huge or not numbers."""
import io
import pathlib
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax.configuration import load_run_config
from grm_jax.errors import DataError
from grm_jax.evaluate import runner
from grm_jax.image_check import jpeg_is_complete
from grm_jax.model import GRM
from grm_jax.track.batched import BatchedTracker
from grm_jax.track.frames import FrameSource, VideoEndedEarlyWarning, iter_frames, read_image
from grm_jax.track.tracker import Tracker, validate_box

CKPT = FIXTURES / "grm_tiny" / "GRM_ep0001.pth.tar"


@pytest.fixture(scope="module")
def frames():
    return np.load(FIXTURES / "track_tiny" / "frames.npz")["frames"]  # (30, 240, 320, 3) RGB


@pytest.fixture(scope="module")
def tiny():
    config, variables = convert_grm_checkpoint(str(CKPT))
    return GRM(config), variables


@pytest.fixture(scope="module")
def run():
    return load_run_config(str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "grm_tiny_cpu.py"))


def _jpeg(image_rgb, params=None) -> bytes:
    flags = [int(v) for kv in (params or {}).items() for v in kv]
    ok, enc = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), flags)
    assert ok
    return enc.tobytes()


def _folder(path, images, fmt=".jpg"):
    path.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images, start=1):
        cv2.imwrite(str(path / f"{i:05d}{fmt}"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return path


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------

def test_truncated_jpeg_is_refused_naming_the_file(tmp_path, frames):
    data = _jpeg(frames[0], {cv2.IMWRITE_JPEG_QUALITY: 90})
    good = tmp_path / "good.jpg"
    good.write_bytes(data)
    np.testing.assert_array_equal(read_image(good), cv2.cvtColor(cv2.imread(str(good)), cv2.COLOR_BGR2RGB))
    for cut in (0.3, 0.6, 0.95, len(data) - 2):
        n = cut if isinstance(cut, int) else int(len(data) * cut)
        bad = tmp_path / f"cut_{n}.jpg"
        bad.write_bytes(data[:n])
        with pytest.raises(DataError, match=f"truncated or corrupt JPEG.*cut_{n}.jpg"):
            read_image(bad)
    # in a frame folder the error names the frame file
    folder = _folder(tmp_path / "seq", frames[:3])
    (folder / "00003.jpg").write_bytes((folder / "00003.jpg").read_bytes()[:-500])
    with pytest.raises(DataError, match="00003.jpg"):
        list(iter_frames(folder))


def test_complete_jpeg_variants_are_accepted(tmp_path, frames):
    """Progressive, restart markers, an EXIF thumbnail, fill bytes and a camera trailer after EOI."""
    pil = Image.fromarray(frames[5])
    variants = {"baseline": _jpeg(frames[5]), "restart": _jpeg(frames[5], {cv2.IMWRITE_JPEG_RST_INTERVAL: 2})}
    for name, kwargs in {"progressive": {"progressive": True}, "optimized": {"optimize": True}}.items():
        buf = io.BytesIO()
        pil.save(buf, "JPEG", **kwargs)
        variants[name] = buf.getvalue()
    thumb = io.BytesIO()
    pil.resize((32, 24)).save(thumb, "JPEG")
    exif = b"Exif\x00\x00" + thumb.getvalue()  # a JPEG (with its own SOS and EOI) inside APP1
    base = variants["baseline"]
    variants["exif_thumbnail"] = base[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + base[2:]
    variants["trailer"] = base + b"SEFT\xff\xda\x00\x10 trailer data"
    variants["fill_bytes"] = base[:-2] + b"\xff\xff\xff\xd9"
    for name, data in variants.items():
        assert jpeg_is_complete(data), name
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data)
        assert read_image(path).shape == (240, 320, 3), name
        for frac in (0.2, 0.5, 0.9):  # and every one of them cut short is refused
            assert not jpeg_is_complete(data[:int(len(data) * frac)]), (name, frac)


def test_truncated_png_is_refused(tmp_path, frames):
    ok, enc = cv2.imencode(".png", frames[0])
    data = enc.tobytes()
    for n in (len(data) // 2, len(data) - 12):
        bad = tmp_path / f"cut_{n}.png"
        bad.write_bytes(data[:n])
        with pytest.raises(DataError, match=f"cut_{n}.png"):
            read_image(bad)


# ----------------------------------------------------------------------------------------------
# videos
# ----------------------------------------------------------------------------------------------

def _damaged_mp4(path, n=60):
    """An MPEG-4 Part 2 clip with bytes in the middle of its media data zeroed: decoding stops early."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for i in range(n):
        im = np.full((48, 64, 3), 4 * i, np.uint8)
        im[10:20, i % 50:i % 50 + 10] = 255
        writer.write(im)
    writer.release()
    data = bytearray(path.read_bytes())
    mdat, moov = data.find(b"mdat"), data.find(b"moov")
    at = mdat + (moov - mdat) * 3 // 10
    data[at:at + 2000] = bytes(2000)
    path.write_bytes(bytes(data))
    return path


def test_damaged_video_warns_with_both_counts(tmp_path):
    path = _damaged_mp4(tmp_path / "damaged.mp4")
    with pytest.warns(VideoEndedEarlyWarning, match=r"damaged.mp4: decoding stopped after \d+ of the 60 frames") as rec:
        source = FrameSource(path)
        got = list(source)
    assert 0 < len(got) < 60
    assert f"after {len(got)} of the 60" in str(rec[0].message)
    assert source.ended_early and source.expected == 60 and source.decoded == len(got)


def test_intact_video_does_not_warn(tmp_path):
    path = tmp_path / "ok.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    with warnings.catch_warnings():
        warnings.simplefilter("error", VideoEndedEarlyWarning)
        source = FrameSource(path)
        assert len(list(source)) == 12 and not source.ended_early


# ----------------------------------------------------------------------------------------------
# frame sizes
# ----------------------------------------------------------------------------------------------

def test_frame_of_another_size_stops_track_mode(tmp_path, frames):
    folder = _folder(tmp_path / "seq", [frames[0], frames[1], frames[2], frames[3][:160, :200]])
    with pytest.raises(DataError, match=r"frame 3 \(.*00004.jpg\): 200x160 pixels, but the first frame .* 320x240"):
        list(iter_frames(folder))


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_frame_of_another_size_in_evaluation(tiny, frames, policy):
    class Seq:
        name = "mixed"
        init_box = np.array([130.0, 100.0, 40.0, 32.0])

    seq = Seq()
    seq.frames = [frames[0], frames[1], frames[2], np.ascontiguousarray(frames[3][:160, :200]), frames[4]]
    tracker = BatchedTracker(*tiny, batch_size=1, on_bad_frame=policy, prefetch=0)
    if policy == "error":
        with pytest.raises(DataError, match=r"sequence 'mixed', frame 3: 200x160 pixels"):
            list(tracker.track([seq]))
        return
    (result,) = list(tracker.track([seq]))
    assert [i for i, _ in result.bad_frames] == [3] and "200x160" in result.bad_frames[0][1]
    assert result.boxes.shape == (5, 4)
    np.testing.assert_array_equal(result.boxes[3], result.boxes[2])  # carried over


# ----------------------------------------------------------------------------------------------
# init boxes
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("box, match", [
    ("400,10,20,20", r"lies entirely outside the 320x240 image"),
    ("-50,10,40,20", r"lies entirely outside"),
    ("10,250,20,20", r"lies entirely outside"),
    ("1e308,10,20,20", r"x = 1e\+308 is beyond 65536 pixels"),
    ("10,10,1e308,1e308", r"w = 1e\+308 is beyond"),
    ("10,10,100000,100000", r"w = 100000 is beyond"),
    ("10,10,1000,400", r"more than 2 times the 320x240 image"),
    ("nan,10,20,20", r"x = nan is not a finite number"),
    ("10,10,-5,20", r"w = -5.0 must be > 0"),
    ("10,10,20", r"expected 4 numbers"),
])
def test_bad_init_box_refused_before_the_model_is_loaded(tmp_path, frames, run, box, match):
    folder = _folder(tmp_path / "seq", frames[:2])
    with pytest.raises(DataError, match=match):  # a missing checkpoint would raise another error
        runner.run_track(run, str(tmp_path / "no_such_model"), str(folder), box, str(tmp_path / "out"))
    assert not (tmp_path / "out" / "boxes.txt").exists()


def test_init_box_checked_against_the_first_frame(tiny, frames):
    with pytest.raises(DataError, match="entirely outside the 320x240 image"):
        Tracker(*tiny).initialize(frames[0], [330, 10, 20, 20])

    class Seq:
        name = "away"
        init_box = np.array([10.0, 300.0, 20.0, 20.0])

    seq = Seq()
    seq.frames = [frames[0], frames[1]]
    with pytest.raises(DataError, match="sequence 'away': init box .* entirely outside"):
        list(BatchedTracker(*tiny, batch_size=1, prefetch=0).track([seq]))
    # within the image, or partly outside it, is fine
    validate_box([-10, -10, 30, 30], image_hw=(240, 320))
    validate_box([300, 200, 600, 480], image_hw=(240, 320))
