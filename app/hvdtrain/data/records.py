"""The TFRecord schema: the one place that names feature keys, label bases and shard names.

``hvdtrain prep`` writes tensorflow/tpu's ``imagenet_to_gcs.py`` layout (labels 1..N in
sorted-wnid order), so data sets written by that tool and by prep are interchangeable. ``hvdtrain
index`` also accepts the two other layouts ImageNet is commonly kept in (``FORMATS``); the
manifest names the format, and readers take the keys and the label base from it here.
"""

from __future__ import annotations

import re
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


# Inception's build_imagenet_data.py adds these to tpu's keys (tpu dropped them).
TEXT = "image/class/text"
BBOX_XMIN = "image/object/bbox/xmin"


@dataclass(frozen=True)
class Format:
    """One TFRecord layout: what its records are keyed by and how its shards are named."""

    name: str
    origin: str  # the tool that writes it
    encoded: str  # key of the encoded image bytes
    label: str  # key of the int64 class label
    label_offset: int  # the label of the first class
    synset: str | None  # key of the class's wnid, where records carry one
    keys: tuple[str, ...]  # keys every record of this layout carries (verify checks them)
    shard_pattern: str  # regex of a shard file name; group "split" is train or validation

    def split_of(self, filename: str) -> str | None:
        m = re.fullmatch(self.shard_pattern, filename)
        return m.group("split") if m else None


_TPU_NAMES = r"(?P<split>train|validation)-\d{5}-of-\d{5}"
TPU = Format("tpu", "tensorflow/tpu imagenet_to_gcs.py (and hvdtrain prep)", ENCODED, LABEL, 1,
             SYNSET, ALL_KEYS, _TPU_NAMES)
INCEPTION = Format("inception", "Inception build_imagenet_data.py", ENCODED, LABEL, 1, SYNSET,
                   (*ALL_KEYS, TEXT, BBOX_XMIN), _TPU_NAMES)
TFDS = Format("tfds", "TensorFlow Datasets imagenet2012", "image", "label", 0, None,
              ("image", "label", "file_name"),
              r"imagenet2012-(?P<split>train|validation)\.tfrecord-\d{5}-of-\d{5}")
FORMATS = {f.name: f for f in (TPU, INCEPTION, TFDS)}


def detect(keys) -> Format | None:
    """The layout a record with these feature keys was written in (None: not one we know)."""
    keys = set(keys)
    if ENCODED in keys and LABEL in keys:
        return INCEPTION if TEXT in keys or BBOX_XMIN in keys else TPU
    if {TFDS.encoded, TFDS.label} <= keys:
        return TFDS
    return None


def shard_split(filename: str) -> str | None:
    """train / validation for a file named like a shard of any known layout, else None."""
    for fmt in (TPU, TFDS):
        if split := fmt.split_of(filename):
            return split
    return None


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
    # deterministic: the feature map's order is sorted by key. protobuf's upb backend (TF 2.16+)
    # otherwise orders it by a per-process hash seed, and the same image would give other bytes
    # in another process (prep under mpirun, a re-run) and so other shard hashes.
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)


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


def parse_for_training(serialized, fmt: Format = TPU, label_offset: int | None = None):
    """Graph-mode parse used by the input pipeline: (encoded JPEG bytes, 0-based int32 label).

    ``label_offset`` is the manifest's (default: the format's)."""
    import tensorflow as tf

    spec = {
        fmt.encoded: tf.io.FixedLenFeature([], tf.string, default_value=""),
        fmt.label: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }
    parsed = tf.io.parse_single_example(serialized, spec)
    offset = fmt.label_offset if label_offset is None else label_offset
    return parsed[fmt.encoded], tf.cast(parsed[fmt.label], tf.int32) - offset
