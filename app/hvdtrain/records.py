"""The TFRecord schema: the one place that names feature keys.

The layout is tensorflow/tpu's ``imagenet_to_gcs.py`` (labels 1..N in sorted-wnid order), so data
sets written by that tool and by ``hvdtrain prep`` are interchangeable. Readers need only
``image/encoded`` and ``image/class/label``.
"""

from __future__ import annotations

from dataclasses import dataclass

ENCODED = "image/encoded"
FORMAT = "image/format"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
COLORSPACE = "image/colorspace"
FILENAME = "image/filename"

ALL_KEYS = (ENCODED, FORMAT, LABEL, SYNSET, HEIGHT, WIDTH, CHANNELS, COLORSPACE, FILENAME)
LABEL_OFFSET = 1  # tensorflow/tpu writes labels 1..1000; consumers subtract it

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)


def shard_name(split: str, index: int, num_shards: int) -> str:
    """``train-00000-of-01024``: tensorflow/tpu's shard naming."""
    return f"{split}-{index:05d}-of-{num_shards:05d}"


@dataclass(frozen=True)
class ImageRecord:
    """One example as prep writes it (the image is already an RGB JPEG)."""

    jpeg: bytes
    label: int
    synset: str
    height: int
    width: int
    filename: str


def encode(rec: ImageRecord) -> bytes:
    """Serialise one example as a ``tf.train.Example`` (imports TensorFlow lazily)."""
    import tensorflow as tf

    def b(v: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    features = {
        ENCODED: b(rec.jpeg),
        FORMAT: b(b"JPEG"),
        LABEL: i(rec.label),
        SYNSET: b(rec.synset.encode()),
        HEIGHT: i(rec.height),
        WIDTH: i(rec.width),
        CHANNELS: i(3),
        COLORSPACE: b(b"RGB"),
        FILENAME: b(rec.filename.encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def parse_full(serialized: bytes) -> dict:
    """Decode every key of one serialised example into plain Python values (for verify/tests)."""
    import tensorflow as tf

    ex = tf.train.Example.FromString(serialized)
    out = {}
    for key, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind")
        values = list(getattr(feat, kind).value)
        out[key] = values[0] if len(values) == 1 else values
    return out


def parse_for_training(serialized, label_offset: int = LABEL_OFFSET):
    """Graph-mode parse used by the input pipeline: (encoded JPEG bytes, 0-based int32 label)."""
    import tensorflow as tf

    spec = {
        ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }
    parsed = tf.io.parse_single_example(serialized, spec)
    label = tf.cast(parsed[LABEL], tf.int32) - label_offset
    return parsed[ENCODED], label
