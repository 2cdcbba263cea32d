"""Turn one raw image file into the RGB JPEG that a record stores.

ImageNet holds a PNG named .JPEG, CMYK JPEGs and grayscale JPEGs; TensorFlow's ``decode_jpeg``
wants RGB JPEG, so those are re-encoded. Every other file passes through byte for byte: a second
JPEG encode would only lose quality and cost time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

REENCODE_QUALITY = 95


class BadImage(ValueError):
    """The file is not an image, or is truncated/corrupt."""


@dataclass(frozen=True)
class NormalisedImage:
    jpeg: bytes
    height: int
    width: int
    reencoded: str  # "" when stored byte for byte, else the reason ("PNG", "CMYK", "L", ...)


def normalise(data: bytes, name: str = "<bytes>") -> NormalisedImage:
    """Decode (to catch truncation), then pass through or re-encode to RGB JPEG."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, (width, height) = img.format, img.mode, img.size  # from the header
            if fmt == "JPEG" and mode == "RGB":
                # Kept byte for byte, so no pixels are needed: decoding at 1/8 scale still reads
                # all the entropy-coded data (a truncated file still raises) at ~half the cost.
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                img.load()
                return NormalisedImage(data, height, width, "")
            img.load()  # full decode: raises on truncated or corrupt data
            reason = fmt if fmt != "JPEG" else mode
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"{name}: not a readable image ({exc})") from exc
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=REENCODE_QUALITY)
    return NormalisedImage(out.getvalue(), rgb.height, rgb.width, reason)
