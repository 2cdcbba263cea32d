"""Data sets as other tools write them, with each tool's published feature keys and file names.

Written here from the tools' documented layouts (not through hvdtrain's ``records`` module), so the
index tests check hvdtrain against the formats, not against itself:
- tensorflow/tpu ``imagenet_to_gcs.py``: ``train-00000-of-00004``, labels 1..N, synsets;
- Inception ``build_imagenet_data.py``: the same plus ``image/class/text`` and bounding boxes;
- tensorflow/tpu's converter as it splits a set (``tpu_converter``): contiguous chunks of
  ceil(N / shards) images in its shipped 1,024 + 128 shards, so a small set leaves shards empty;
- TensorFlow Datasets ``imagenet2012``: ``imagenet2012-train.tfrecord-00000-of-00004``,
  keys ``image``/``label``/``file_name``, labels from 0.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

FORMATS = ("tpu", "tpu-subdirs", "inception", "tfds")


def _b(v: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _i(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=v if isinstance(v, list) else [v]))


def _f(v: list[float]):
    return tf.train.Feature(float_list=tf.train.FloatList(value=v))


def raw_examples(demo_raw: Path) -> dict[str, list[tuple[Path, str, int]]]:
    """(image file, wnid, 0-based class) per split, from the demo's raw tree."""
    wnids = sorted(p.name for p in (demo_raw / "train").iterdir())
    train = [(f, f.parent.name, wnids.index(f.parent.name))
             for f in sorted((demo_raw / "train").glob("*/*.JPEG"))]
    labels = (demo_raw / "validation_labels.txt").read_text().split()
    val = [(f, w, wnids.index(w)) for f, w in zip(sorted((demo_raw / "validation").glob("*.JPEG")),
                                                  labels, strict=True)]
    return {"train": train, "validation": val}


def example(fmt: str, path: Path, wnid: str, cls: int) -> bytes:
    jpeg = path.read_bytes()
    if fmt == "tfds":
        feats = {"image": _b(jpeg), "label": _i(cls), "file_name": _b(path.name.encode())}
    else:
        h, w, _ = tf.image.extract_jpeg_shape(jpeg).numpy()
        feats = {"image/height": _i(int(h)), "image/width": _i(int(w)),
                 "image/colorspace": _b(b"RGB"), "image/channels": _i(3),
                 "image/class/label": _i(cls + 1), "image/class/synset": _b(wnid.encode()),
                 "image/format": _b(b"JPEG"), "image/filename": _b(path.name.encode()),
                 "image/encoded": _b(jpeg)}
        if fmt == "inception":
            feats.update({"image/class/text": _b(f"digit {cls}".encode()),
                          "image/object/bbox/xmin": _f([0.1]), "image/object/bbox/xmax": _f([0.9]),
                          "image/object/bbox/ymin": _f([0.1]), "image/object/bbox/ymax": _f([0.9]),
                          "image/object/bbox/label": _i([cls + 1])})
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def shard_path(out: Path, fmt: str, split: str, i: int, n: int) -> Path:
    if fmt == "tfds":
        return out / f"imagenet2012-{split}.tfrecord-{i:05d}-of-{n:05d}"
    folder = out / split if fmt == "tpu-subdirs" else out
    return folder / f"{split}-{i:05d}-of-{n:05d}"


def write(demo_raw: Path, out: Path, fmt: str, shards: dict | None = None) -> dict[str, list[int]]:
    """Write the demo images as ``fmt``; returns the 0-based labels per split."""
    shards = shards or {"train": 4, "validation": 2}
    labels = {}
    for split, items in raw_examples(demo_raw).items():
        n = shards[split]
        for i in range(n):
            path = shard_path(out, fmt, split, i, n)
            path.parent.mkdir(parents=True, exist_ok=True)
            with tf.io.TFRecordWriter(str(path)) as w:
                for item in items[i::n]:
                    w.write(example(fmt, *item))
        labels[split] = [cls for _, _, cls in items]
    return labels


TPU_SHARDS = {"train": 1024, "validation": 128}  # imagenet_to_gcs.py's TRAINING/VALIDATION_SHARDS


def tpu_converter(demo_raw: Path, out: Path) -> dict[str, int]:
    """The demo images as tpu's converter writes them: shard k holds images k*c .. (k+1)*c - 1
    with c = ceil(N / shards), so every shard past the last chunk is written empty. Returns the
    empty shards per split."""
    empty = {}
    for split, items in raw_examples(demo_raw).items():
        n = TPU_SHARDS[split]
        chunk = -(-len(items) // n)
        for i in range(n):
            with tf.io.TFRecordWriter(str(shard_path(out, "tpu", split, i, n))) as w:
                for item in items[i * chunk:(i + 1) * chunk]:
                    w.write(example("tpu", *item))
        empty[split] = n - -(-len(items) // chunk)
    return empty
