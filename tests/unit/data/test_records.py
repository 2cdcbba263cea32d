"""The schema: tensorflow/tpu's keys, read back with plain tf.data + parse_single_example."""

import json

import tensorflow as tf

from hvdtrain.data import records

# Only what a tensorflow/tpu reader asks for (resnet_preprocessing / imagenet_input).
TPU_KEYS = {
    "image/encoded": tf.io.FixedLenFeature((), tf.string, ""),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64, -1),
}


def test_encode_roundtrip_has_every_tpu_key():
    rec = records.ImageRecord(b"\xff\xd8jpeg", 7, "n01440764", 375, 500, "x.JPEG")
    got = records.parse_full(records.encode(rec))
    assert set(got) == set(records.ALL_KEYS)
    assert got[records.LABEL] == 7 and got[records.SYNSET] == b"n01440764"
    assert (got[records.HEIGHT], got[records.WIDTH], got[records.CHANNELS]) == (375, 500, 3)
    assert got[records.FORMAT] == b"JPEG" and got[records.COLORSPACE] == b"RGB"


def test_prep_output_reads_with_plain_tf_data(demo_records):
    man = json.loads((demo_records / "manifest.json").read_text())
    files = sorted(str(p) for p in demo_records.glob("train-*"))
    assert len(files) == 16 and man["train"]["num_shards"] == 16
    ds = tf.data.TFRecordDataset(files).map(lambda s: tf.io.parse_single_example(s, TPU_KEYS))
    labels = []
    for ex in ds:
        img = tf.io.decode_jpeg(ex["image/encoded"], channels=3)
        assert img.shape[-1] == 3
        labels.append(int(ex["image/class/label"]))
    assert len(labels) == man["train"]["num_images"]
    assert min(labels) == 1 and max(labels) == 10  # 1..N, tensorflow/tpu's convention
    # classes are mixed inside every shard (the shuffle before sharding)
    for f in files:
        shard_labels = {int(tf.io.parse_single_example(s, TPU_KEYS)["image/class/label"])
                        for s in tf.data.TFRecordDataset(f)}
        assert len(shard_labels) >= 5
