"""tf.data input: shard by rank, parse (via ``records``), tensorflow/tpu preprocessing, batch.

Preprocessing is tensorflow/tpu's ``resnet_preprocessing.py``, op for op. Train: random-resized
crop done inside the JPEG decoder (``decode_and_crop_jpeg`` decodes only the crop), TF1's bicubic
resize, random flip, normalise. Eval: centre crop of 87.5% of the shorter side (tpu's current
rule; ``--crop-padding`` P makes it image_size/(image_size + P)), the same resize. Each rank reads
a disjoint set of shard files when there are at least as many files as ranks, else a disjoint
record-level shard. Training repeats forever; its order, shuffle and
augmentation are stateless functions of (seed, rank, position), so a resume continues exactly
where the checkpoint was. The plan fixes the step count so every rank runs the same number of
steps whatever the shard sizes.
"""

from __future__ import annotations

import tensorflow as tf

from hvdtrain.data import manifest, records
from hvdtrain.training.config import crop_padding_for

MEAN_RGB = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STDDEV_RGB = [0.229 * 255, 0.224 * 255, 0.225 * 255]
AUTOTUNE = tf.data.AUTOTUNE


def _normalise(image):
    image = tf.cast(image, tf.float32)
    return (image - MEAN_RGB) / STDDEV_RGB


def _resize(image, size: int):
    """tensorflow/tpu's resize: TF1's bicubic on a corner-aligned grid (no half-pixel centres).

    ``tf.image.resize`` samples at half-pixel centres and differs by 2.5-7 pixel values on average
    on real photos; the reference's accuracy was reached with this one."""
    # The op behind tf.compat.v1.image.resize_bicubic, without its deprecation warning.
    return tf.raw_ops.ResizeBicubic(images=image[None], size=[size, size], align_corners=False,
                                    half_pixel_centers=False)[0]


def crop_window(encoded, seed, min_area: float = 0.08):
    """The random-resized crop's window [y, x, h, w] for one JPEG, drawn from ``seed``, and whether
    the sampler gave up (10 failed attempts return the whole image; then the centre crop is used)."""
    shape = tf.image.extract_jpeg_shape(encoded)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(min_area, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    # tpu's test: at least 3 of (h, w, channels) equal between the JPEG and the 3-channel crop.
    decoded = tf.concat([crop_size[:2], [3]], 0)
    failed = tf.reduce_sum(tf.cast(tf.equal(shape, decoded), tf.int32)) >= 3
    return tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]]), failed


def train_image(encoded, image_size: int, seed, min_area: float = 0.08, flip: bool = True,
                crop_padding: int | None = None):
    """Random-resized crop (decoded inside the JPEG decoder) and flip, in pixel values 0..255.

    Drawn from ``seed`` (shape [2]): the same record at the same stream position gets the same
    augmentation in every run, which makes a resumed run exact."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    window, failed = crop_window(encoded, crop_seed, min_area)
    image = tf.cond(failed,
                    lambda: center_crop_image(encoded, image_size, crop_padding),
                    lambda: _resize(tf.image.decode_and_crop_jpeg(encoded, window, channels=3),
                                    image_size))
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return image


def center_window(shape, image_size: int, crop_padding: int | None = None):
    """tensorflow/tpu's centre crop: image_size/(image_size + crop_padding) of the shorter side;
    ``crop_padding`` None is tpu's current rule (``config.crop_padding_for``: 87.5%)."""
    if crop_padding is None:
        crop_padding = crop_padding_for(image_size)
    h, w = shape[0], shape[1]
    crop = tf.cast(image_size / (image_size + crop_padding) * tf.cast(tf.minimum(h, w), tf.float32),
                   tf.int32)
    return tf.stack([(h - crop + 1) // 2, (w - crop + 1) // 2, crop, crop])


def center_crop_image(encoded, image_size: int, crop_padding: int | None = None):
    """The eval image in pixel values 0..255: centre crop, then resize."""
    window = center_window(tf.image.extract_jpeg_shape(encoded), image_size, crop_padding)
    return _resize(tf.image.decode_and_crop_jpeg(encoded, window, channels=3), image_size)


def train_preprocess(encoded, image_size: int, seed, min_area: float = 0.08, flip: bool = True,
                     crop_padding: int | None = None):
    return _normalise(train_image(encoded, image_size, seed, min_area, flip, crop_padding))


def eval_preprocess(encoded, image_size: int, crop_padding: int | None = None):
    return _normalise(center_crop_image(encoded, image_size, crop_padding))


def serving_preprocess(encoded, image_size: int, crop_padding: int | None = None):
    """``eval_preprocess`` for any image a client sends: a JPEG goes the same way, op for op (so an
    export scores the records exactly as ``hvdtrain eval`` does); PNG, GIF or BMP are decoded
    whole, then cropped and resized the same way."""
    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        y, x, h, w = tf.unstack(center_window(tf.shape(image), image_size, crop_padding))
        return _resize(image[y:y + h, x:x + w], image_size)
    image = tf.cond(tf.io.is_jpeg(encoded), lambda: center_crop_image(encoded, image_size, crop_padding),
                    other)
    return _normalise(image)


def _files(man: manifest.Manifest, split: str) -> list[str]:
    return [str(p) for p in man.paths(split)]


def rank_files(files: list[str], rank: int, size: int) -> list[str] | None:
    """This rank's files for a file-level shard, or None when a record-level shard is needed."""
    return files[rank::size] if len(files) >= size else None


def rank_records(files: list[str], rank: int, size: int) -> tf.data.Dataset:
    """Serialized records of this rank in a fixed order: disjoint across ranks, together all of
    ``files``. File-level when there are at least as many files as ranks (each rank opens only
    its files), record-level otherwise."""
    mine = rank_files(files, rank, size)
    if mine is None:
        return tf.data.TFRecordDataset(files).shard(size, rank)
    return tf.data.Dataset.from_tensor_slices(mine).flat_map(tf.data.TFRecordDataset)


def rank_counts(counts: list[int], size: int) -> list[int]:
    """Records each rank reads, from the manifest's per-shard counts (no messages needed)."""
    if len(counts) >= size:
        return [sum(counts[r::size]) for r in range(size)]
    total = sum(counts)
    return [len(range(r, total, size)) for r in range(size)]


SHUFFLE_STREAM, AUGMENT_STREAM = 0, 1 << 40  # keep the two random streams of a rank apart


def _stream_key(seed: int, rank: int, stream: int):
    """First half of every stateless seed of this rank's training stream: (seed, rank, which use)."""
    return tf.constant(seed * 1000 + rank + stream, tf.int64)


def shuffle_block_size(batch: int) -> int:
    """Records shuffled together (like a shuffle buffer of this size; prep already mixed classes)."""
    return max(1024, 4 * batch)


def train_records(files: list[str], counts: list[int], rank: int, size: int, seed: int,
                  block: int = 1024, start_records: int = 0) -> tf.data.Dataset:
    """This rank's endless training stream, ``start_records`` records in.

    Epoch ``e`` reads the rank's files in an order fixed by (seed, rank, e), interleaved
    deterministically, and shuffles each run of ``block`` records in an order fixed by (seed, rank,
    e, block). Unlike a shuffle buffer this keeps no state, so the stream is a pure function of its
    position: a resumed run continues exactly where its checkpoint was.
    """
    epoch0, offset = divmod(start_records, rank_counts(counts, size)[rank])
    mine = rank_files(files, rank, size)
    stream_id = _stream_key(seed, rank, SHUFFLE_STREAM)

    def file_order(epoch):
        if mine is None:  # fewer files than ranks: a record-level shard, the block shuffle mixes it
            return tf.data.TFRecordDataset(files).shard(size, rank)
        key, names = tf.stack([stream_id, epoch]), tf.constant(mine)
        order = tf.data.Dataset.range(len(mine)).map(
            lambda i: tf.gather(names, tf.random.experimental.index_shuffle(i, key, len(mine) - 1)))
        return order.interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(mine)),
                                num_parallel_calls=AUTOTUNE, deterministic=True)

    def epoch_stream(epoch):
        def shuffle(k, recs):
            noise = tf.random.stateless_uniform(tf.shape(recs), tf.stack([stream_id, epoch * (1 << 31) + k]))
            return tf.gather(recs, tf.argsort(noise))
        blocks = file_order(epoch).batch(block).enumerate().map(shuffle).prefetch(1)
        return blocks.unbatch()

    return tf.data.Dataset.range(epoch0, 1 << 62).flat_map(epoch_stream).skip(offset)


def train_dataset(man: manifest.Manifest, rank: int, size: int, batch: int, image_size: int,
                  seed: int = 0, min_area: float = 0.08, flip: bool = True,
                  start_step: int = 0, crop_padding: int | None = None) -> tf.data.Dataset:
    """Batches of (images, labels); record ``p`` of this rank's stream is augmented with a seed
    made of (seed, rank, p), so the whole stream, pixels included, is a function of its position."""
    files = _files(man, records.TRAIN)
    counts = man.train.counts
    start = start_step * batch
    ds = train_records(files, counts, rank, size, seed, shuffle_block_size(batch), start_records=start)
    positions = tf.data.Dataset.range(start, 1 << 62)
    fmt, offset = man.record_format, man.label_offset
    stream_id = _stream_key(seed, rank, AUGMENT_STREAM)

    def parse(position, serialized):
        encoded, label = records.parse_for_training(serialized, fmt, offset)
        aug_seed = tf.stack([stream_id, position])
        return train_preprocess(encoded, image_size, aug_seed, min_area, flip, crop_padding), label

    ds = tf.data.Dataset.zip((positions, ds)).map(parse, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch, drop_remainder=True).prefetch(AUTOTUNE)


def eval_counts(man: manifest.Manifest, size: int) -> list[int]:
    """Images each rank scores (from the manifest: every rank knows every count, no messages)."""
    return rank_counts(man.validation.counts, size)


def eval_dataset(man: manifest.Manifest, rank: int, size: int, batch: int, image_size: int,
                 crop_padding: int | None = None) -> tuple[tf.data.Dataset, int]:
    """(images, labels, mask) batches; padded so every rank runs the same number of steps.

    Every validation image is scored exactly once over all ranks; padding has mask 0.
    """
    ds = rank_records(_files(man, records.VALIDATION), rank, size)
    counts = eval_counts(man, size)
    steps = -(-max(counts) // batch)
    fmt, offset = man.record_format, man.label_offset

    def parse(serialized):
        encoded, label = records.parse_for_training(serialized, fmt, offset)
        return eval_preprocess(encoded, image_size, crop_padding), label, tf.constant(1.0)

    ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
    pad = steps * batch - counts[rank]
    if pad:
        blank = (tf.zeros([image_size, image_size, 3]), tf.constant(0, tf.int32), tf.constant(0.0))
        ds = ds.concatenate(tf.data.Dataset.from_tensors(blank).repeat(pad))
    return ds.batch(batch, drop_remainder=True).prefetch(AUTOTUNE), steps


def synthetic_dataset(batch: int, image_size: int, num_classes: int) -> tf.data.Dataset:
    """One random batch repeated forever (for `bench --input synthetic`)."""
    images = tf.random.stateless_uniform([batch, image_size, image_size, 3], seed=(1, 2),
                                         minval=-2.0, maxval=2.0)
    labels = tf.random.stateless_uniform([batch], seed=(3, 4), maxval=num_classes, dtype=tf.int32)
    return tf.data.Dataset.from_tensors((images, labels)).repeat()
