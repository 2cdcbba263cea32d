"""The training crop: our fused ``decode_and_crop_jpeg`` against tensorflow/tpu's current
decode-whole-then-crop, on scikit-learn's two sample photos re-saved at three chroma subsamplings.

    .venv/bin/python bench/fused_crop.py

Prints, per subsampling, the largest and the mean pixel difference over 200 random crop windows.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import sklearn.datasets
import tensorflow as tf
from PIL import Image

PHOTOS = sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))
SUBSAMPLING = {"4:2:0": 2, "4:2:2": 1, "4:4:4": 0}  # Pillow's codes


def compare(jpeg: bytes, windows: int = 200, seed: int = 0) -> tuple[int, float]:
    full = tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(int)
    h, w = full.shape[:2]
    rng = np.random.default_rng(seed)
    worst, means = 0, []
    for _ in range(windows):
        ch, cw = rng.integers(h // 4, h), rng.integers(w // 4, w)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        fused = tf.image.decode_and_crop_jpeg(jpeg, [y, x, ch, cw], channels=3).numpy().astype(int)
        diff = np.abs(fused - full[y:y + ch, x:x + cw])
        worst, means = max(worst, int(diff.max())), [*means, float(diff.mean())]
    return worst, float(np.mean(means))


def main() -> None:
    for name, code in SUBSAMPLING.items():
        results = []
        for photo in PHOTOS:
            buf = io.BytesIO()
            Image.open(photo).convert("RGB").save(buf, "JPEG", quality=90, subsampling=code)
            results.append(compare(buf.getvalue()))
        print(f"{name}: fused vs whole-then-crop over {len(PHOTOS)} photos x 200 windows: max "
              f"{max(r[0] for r in results)} levels, mean {np.mean([r[1] for r in results]):.4f}")


if __name__ == "__main__":
    main()
