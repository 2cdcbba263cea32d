"""Turn one raw image file into the JPEG that a record stores, as tensorflow/tpu's converter does.

ImageNet holds a PNG named .JPEG, CMYK JPEGs and grayscale JPEGs. Like tpu's
``imagenet_to_gcs.py``, the PNG and CMYK files are re-encoded as RGB JPEG at quality 100; every
other JPEG (RGB or grayscale) is stored byte for byte. The readers decode with ``channels=3``, which
makes RGB of a grayscale JPEG, so re-encoding it would only change its pixels and cost time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

REENCODE_QUALITY = 100  # tensorflow/tpu's png_to_jpeg and cmyk_to_rgb
KEPT_JPEG_MODES = ("RGB", "L")  # stored as they are: decode_jpeg(channels=3) reads both


class BadImage(ValueError):
    """The file is not an image, or is truncated/corrupt. The message names the file once."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"bad image {name}: {reason}")
        self.reason = reason


def _reason(exc: BaseException) -> str:
    """Pillow's words without its in-memory object (``<_io.BytesIO object at 0x...>``)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (no JPEG, PNG or other image header)"
    return f"truncated or corrupt ({exc})"


@dataclass(frozen=True)
class NormalisedImage:
    jpeg: bytes
    height: int
    width: int
    reencoded: str  # "" when stored byte for byte, else the reason ("PNG", "CMYK", ...)


def normalise(data: bytes, name: str = "<bytes>") -> NormalisedImage:
    """Decode (to catch truncation), then pass through or re-encode to RGB JPEG."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, (width, height) = img.format, img.mode, img.size  # from the header
            if fmt == "JPEG" and mode in KEPT_JPEG_MODES:
                # Kept byte for byte, so no pixels are needed: decoding at 1/8 scale still reads
                # all the entropy-coded data (a truncated file still raises) at ~half the cost.
                img.draft(mode, (max(1, width // 8), max(1, height // 8)))
                img.load()
                return NormalisedImage(data, height, width, "")
            img.load()  # full decode: raises on truncated or corrupt data
            reason = fmt if fmt != "JPEG" else mode
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage(name, _reason(exc)) from exc
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=REENCODE_QUALITY)
    return NormalisedImage(out.getvalue(), rgb.height, rgb.width, reason)
