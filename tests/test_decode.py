"""Frame decoding (grm_jax/datasets/decode.py): the RGB decode gives the official BGR decode's pixels
bit for bit; the reduced JPEG decode's sizes, scale and orientation handling."""
import math
import struct

import cv2
import numpy as np
import pytest

from grm_jax.datasets.decode import CorruptImageError, decode_image, decode_reduced


def _official(data: bytes) -> np.ndarray:
    """What the official code reads: cv2.imread (BGR) then BGR -> RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _scene(h=75, w=101, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def _encoded_files() -> dict[str, bytes]:
    img = _scene()
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([img, np.arange(img.size // 3, dtype=np.uint8).reshape(img.shape[:2])])
    files = {
        "jpeg 4:2:0": (".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90]),
        "jpeg 4:4:4": (".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                     cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
        "jpeg progressive": (".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "jpeg grey": (".jpg", gray, []),
        "png": (".png", img, []),
        "png rgba": (".png", rgba, []),
        "png grey": (".png", gray, []),
        "png 16 bit": (".png", img.astype(np.uint16) * 257, []),
        "bmp": (".bmp", img, []),
        "webp": (".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 80]),
    }
    return {name: cv2.imencode(ext, im, params)[1].tobytes() for name, (ext, im, params) in files.items()}


@pytest.mark.parametrize("rgb_flag", [True, False], ids=["IMREAD_COLOR_RGB", "older OpenCV"])
def test_decode_image_equals_official_bgr_decode(monkeypatch, rgb_flag):
    if not rgb_flag:  # an OpenCV without IMREAD_COLOR_RGB: BGR decode + one conversion
        monkeypatch.delattr(cv2, "IMREAD_COLOR_RGB", raising=False)
    elif not hasattr(cv2, "IMREAD_COLOR_RGB"):
        pytest.fail("this OpenCV has no IMREAD_COLOR_RGB: the fast path is not tested")
    for name, data in _encoded_files().items():
        got = decode_image(data, name)
        assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, name
        np.testing.assert_array_equal(got, _official(data), err_msg=name)


def test_decode_image_equals_official_on_real_frames(real_sequences):
    for seq in ("truck2", "Crossing", "Girl", "Surfing06"):
        for path in sorted((real_sequences / seq).glob("*.jpg"))[::40]:
            data = path.read_bytes()
            np.testing.assert_array_equal(decode_image(data, str(path)), _official(data), err_msg=str(path))


def test_decode_errors_name_the_file():
    with pytest.raises(CorruptImageError, match="empty image file: a.jpg"):
        decode_image(b"", "a.jpg")
    jpeg = _encoded_files()["jpeg 4:2:0"]
    with pytest.raises(CorruptImageError, match="truncated.*b.jpg"):
        decode_reduced(jpeg[:len(jpeg) // 2], "b.jpg", 2)
    with pytest.raises(CorruptImageError, match="cannot read image.*c.bin"):
        decode_image(b"not an image at all", "c.bin")
    with pytest.raises(ValueError, match="reduce must be one of"):
        decode_reduced(jpeg, "d.jpg", 3)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_decode_reduced_jpeg_size_and_scale(k):
    """A 101x75 JPEG at 1/k: ceil sizes, the full size reported, and pixel (r, c) covering the full
    frame's [k r, k r + k) x [k c, k c + k) (close to the block mean of the full decode)."""
    data = _encoded_files()["jpeg 4:4:4"]
    img, used, full_hw = decode_reduced(data, "f.jpg", k)
    assert used == k and full_hw == (75, 101)
    assert img.shape == (math.ceil(75 / k), math.ceil(101 / k), 3) and img.dtype == np.uint8
    full = decode_image(data, "f.jpg")
    if k == 1:
        np.testing.assert_array_equal(img, full)
        return
    h, w = 75 // k, 101 // k  # whole blocks only
    means = full[:h * k, :w * k].reshape(h, k, w, k, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(img[:h, :w] - means).mean() < 4.0


def test_decode_reduced_other_formats_at_full_size():
    data = _encoded_files()["png"]
    img, used, full_hw = decode_reduced(data, "p.png", 4)
    assert used == 1 and full_hw == (75, 101)
    np.testing.assert_array_equal(img, _official(data))


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 Exif segment holding one IFD entry: Orientation (0x0112)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_decode_reduced_follows_exif_rotation():
    """A JPEG whose EXIF orientation turns it by 90 degrees: decoded turned (as cv2.imread), and the
    full size reported is the turned one."""
    data = _with_exif_orientation(_encoded_files()["jpeg 4:2:0"], 6)
    full = decode_image(data, "r.jpg")
    assert full.shape[:2] == (101, 75)
    img, used, full_hw = decode_reduced(data, "r.jpg", 2)
    assert used == 2 and full_hw == (101, 75) and img.shape[:2] == (51, 38)
