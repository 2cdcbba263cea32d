"""What tensorflow/tpu's own tools do, checked against hvdtrain: payloads kept or re-encoded as its
converter (``imagenet_to_gcs.py``) does, and the eval centre crop of its current
``resnet_preprocessing.py``. The references are computed here from those rules, not from hvdtrain."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from conftest import run
from hvdtrain.data import records

WNIDS = ("n00000001", "n00000002")


def _photo(seed: int, size=(64, 48)) -> Image.Image:
    """A smooth colour field with grain: compresses like a photo, so re-encoding shows."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h) + 64], axis=-1)
    return Image.fromarray((base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8))


# name -> (how it is written, kept byte for byte?)
KINDS = {
    "rgb420": (lambda im, b: im.save(b, "JPEG", quality=90, subsampling=2), True),
    "rgb444": (lambda im, b: im.save(b, "JPEG", quality=90, subsampling=0), True),
    "progressive": (lambda im, b: im.save(b, "JPEG", quality=85, progressive=True), True),
    "gray": (lambda im, b: im.convert("L").save(b, "JPEG", quality=90), True),
    "cmyk": (lambda im, b: im.convert("CMYK").save(b, "JPEG", quality=95), False),
    "png": (lambda im, b: im.save(b, "PNG"), False),  # a PNG named .JPEG, as ImageNet has one
}


def _tree(root: Path) -> dict[str, bytes]:
    """Two classes, every kind in each, and a validation set; returns file name -> bytes."""
    files = {}
    for c, wnid in enumerate(WNIDS):
        (root / "train" / wnid).mkdir(parents=True)
        for k, (name, (save, _)) in enumerate(KINDS.items()):
            buf = io.BytesIO()
            save(_photo(10 * c + k), buf)
            path = root / "train" / wnid / f"{wnid}_{name}.JPEG"
            path.write_bytes(buf.getvalue())
            files[path.name] = buf.getvalue()
    (root / "validation").mkdir()
    for k in range(2):
        buf = io.BytesIO()
        _photo(100 + k).save(buf, "JPEG", quality=90)
        (root / "validation" / f"ILSVRC2012_val_{k + 1:08d}.JPEG").write_bytes(buf.getvalue())
    (root / "validation_labels.txt").write_text("\n".join(WNIDS) + "\n")
    return files


def _tpu_reencode(data: bytes) -> np.ndarray:
    """tpu's converter: decode to RGB, encode_jpeg(format='rgb', quality=100); decoded here."""
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return tf.io.decode_jpeg(tf.io.encode_jpeg(rgb, format="rgb", quality=100), channels=3).numpy()


def test_prep_keeps_every_jpeg_as_it_is_and_reencodes_png_and_cmyk_like_tpu(tmp_path):
    files = _tree(tmp_path / "raw")
    out = tmp_path / "records"
    res = run(["prep", "--raw-data-dir", tmp_path / "raw", "--output-dir", out, "--train-shards", 1,
               "--validation-shards", 1, "--no-progress"], check=True)
    stored = {}
    for raw in tf.data.TFRecordDataset(str(out / "train-00000-of-00001")).as_numpy_iterator():
        ex = records.parse_full(raw)
        stored[ex[records.FILENAME].decode()] = ex[records.ENCODED]
    assert set(stored) == set(files), res.stdout
    for name, data in files.items():
        kind = name.split("_", 1)[1].removesuffix(".JPEG")
        if KINDS[kind][1]:
            assert stored[name] == data, f"{name}: payload changed"
            continue
        assert stored[name] != data and Image.open(io.BytesIO(stored[name])).mode == "RGB", name
        ours = tf.io.decode_jpeg(stored[name], channels=3).numpy().astype(int)
        diff = np.abs(ours - _tpu_reencode(data)).max()
        assert diff <= 1, f"{name}: {diff} levels from tpu's quality-100 re-encode"
