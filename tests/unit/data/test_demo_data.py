"""The embedded data set: real digits, ImageNet layout, stratified hold-out, deterministic."""

import hashlib
from collections import Counter

from PIL import Image

from hvdtrain.data.demo_data import write_demo_data


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_layout_split_and_labels(demo_raw):
    classes = sorted(p.name for p in (demo_raw / "train").iterdir())
    assert classes == [f"n{k:08d}" for k in range(10)]
    val = sorted((demo_raw / "validation").glob("*.JPEG"))
    labels = (demo_raw / "validation_labels.txt").read_text().split()
    train_counts = Counter(p.parent.name for p in (demo_raw / "train").rglob("*.JPEG"))
    assert len(val) == len(labels) and sum(train_counts.values()) + len(val) == 1797
    val_counts = Counter(labels)
    for c in classes:  # at least 20% of every class is held out
        assert val_counts[c] >= 0.2 * (val_counts[c] + train_counts[c])
    img = Image.open(val[0])
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (32, 32)


def test_deterministic_for_a_seed(tmp_path):
    write_demo_data(tmp_path / "a", image_size=16, seed=3)
    write_demo_data(tmp_path / "b", image_size=16, seed=3)
    write_demo_data(tmp_path / "c", image_size=16, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
