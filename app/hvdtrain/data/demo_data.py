"""``hvdtrain demo-data``: scikit-learn's handwritten digits as an ImageNet-style raw tree.

1,797 real 8x8 scans in 10 classes ship inside scikit-learn, so the whole product can be run and
tested with no download. Images are upscaled to RGB JPEGs; a stratified share is held out as
``validation/`` with an ImageNet-style labels file.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
from PIL import Image


def wnid(label: int) -> str:
    return f"n{label:08d}"


def write_demo_data(out: str | Path, image_size: int = 32, validation_fraction: float = 0.2,
                    seed: int = 0) -> dict:
    """Write the tree; deterministic for a given seed. Returns counts."""
    from sklearn.datasets import load_digits

    if image_size < 8:
        raise ValueError(f"--image-size {image_size} must be at least 8 (the scans are 8x8)")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"--validation-fraction {validation_fraction} must be between 0 and 1")
    digits = load_digits()
    out = Path(out)
    train_dir, val_dir = out / "train", out / "validation"
    rng = random.Random(seed)
    held_out: list[tuple[int, int]] = []  # (sample index, label)
    n_train = 0
    for label in sorted(set(int(t) for t in digits.target)):
        idx = [i for i, t in enumerate(digits.target) if t == label]
        rng.shuffle(idx)
        n_val = math.ceil(validation_fraction * len(idx))
        held_out += [(i, label) for i in idx[:n_val]]
        (train_dir / wnid(label)).mkdir(parents=True, exist_ok=True)
        for i in idx[n_val:]:
            _save(digits.images[i], image_size, train_dir / wnid(label) / f"{wnid(label)}_{i:04d}.JPEG")
            n_train += 1
    rng.shuffle(held_out)  # validation files are not ordered by class, as in ImageNet
    val_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (i, label) in enumerate(held_out, start=1):
        _save(digits.images[i], image_size, val_dir / f"ILSVRC2012_val_{k:08d}.JPEG")
        lines.append(wnid(label))
    (out / "validation_labels.txt").write_text("\n".join(lines) + "\n")
    return {"train": n_train, "validation": len(held_out), "classes": 10}


def _save(scan: np.ndarray, size: int, path: Path) -> None:
    gray = (255 - scan * (255 / 16)).clip(0, 255).astype(np.uint8)  # dark ink on white paper
    img = Image.fromarray(gray, mode="L").resize((size, size), Image.BICUBIC).convert("RGB")
    img.save(path, format="JPEG", quality=95)


def write_synthetic_tree(out: str | Path, num_images: int, num_classes: int = 10,
                         size: tuple[int, int] = (500, 375), seed: int = 0) -> None:
    """ImageNet-sized JPEGs (ImageNet's typical 500x375) for prep and input-pipeline benchmarks.

    Smooth random colour fields plus grain: they compress to sizes like real photos (tens of
    kB), unlike pure noise. A tenth is held out as validation/ with a labels file.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    w, h = size
    lines = []
    for i in range(num_images):
        small = rng.integers(0, 255, (h // 25, w // 25, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize((w, h), Image.BICUBIC)
        grain = rng.integers(-12, 12, (h, w, 3), dtype=np.int16)
        arr = np.clip(np.asarray(img, np.int16) + grain, 0, 255).astype(np.uint8)
        label = (i + i // 10) % num_classes  # rotates, so held-out images cover every class
        if i % 10 == 9:
            path = out / "validation" / f"ILSVRC2012_val_{len(lines) + 1:08d}.JPEG"
            lines.append(wnid(label))
        else:
            path = out / "train" / wnid(label) / f"{wnid(label)}_{i:06d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, "RGB").save(path, format="JPEG", quality=90)
    (out / "validation").mkdir(parents=True, exist_ok=True)
    (out / "validation_labels.txt").write_text("\n".join(lines) + "\n")
