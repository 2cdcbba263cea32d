"""Re-encoding rules (tensorflow/tpu's): only PNG-as-JPEG and CMYK change; RGB and grayscale JPEGs
are stored byte for byte."""

import io

import numpy as np
import pytest
from PIL import Image

from hvdtrain.data.images import BadImage, normalise


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _photo(mode="RGB", size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_rgb_and_grayscale_jpeg_pass_through_unchanged(mode):
    data = _encode(_photo(mode), "JPEG")
    out = normalise(data)
    assert out.jpeg == data and out.reencoded == "" and (out.height, out.width) == (30, 40)


@pytest.mark.parametrize("mode,fmt,reason", [("CMYK", "JPEG", "CMYK"), ("RGB", "PNG", "PNG")])
def test_odd_inputs_become_rgb_jpeg(mode, fmt, reason):
    out = normalise(_encode(_photo(mode), fmt), "x.JPEG")
    assert out.reencoded == reason
    img = Image.open(io.BytesIO(out.jpeg))
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (40, 30)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_jpeg_is_rejected_with_its_name(keep):
    """Also when only the last few hundred bytes are missing (RGB JPEGs are checked at 1/8 scale)."""
    data = _encode(_photo(size=(400, 300)), "JPEG")
    with pytest.raises(BadImage, match=r"cut\.JPEG"):
        normalise(data[: int(len(data) * keep)], "cut.JPEG")


def test_large_rgb_jpeg_keeps_its_full_size():
    data = _encode(_photo(size=(500, 375)), "JPEG")
    out = normalise(data)
    assert out.jpeg == data and (out.height, out.width) == (375, 500)


def test_text_file_is_rejected():
    with pytest.raises(BadImage, match=r"notes\.JPEG"):
        normalise(b"this is not an image", "notes.JPEG")
