"""Our preprocessing against tensorflow/tpu's resnet_preprocessing.py, rebuilt here from TF's legacy
ops as tpu composes them (crop arithmetic in NumPy), on real photos and on the demo digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import tensorflow as tf

from hvdtrain.engine import input_pipeline as ip

PHOTOS = sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))  # 427 x 640


def _digits(demo_raw) -> list[Path]:
    return sorted((demo_raw / "train").glob("*/*.JPEG"))[::300][:3]


def tpu_eval(jpeg: bytes, size: int, padding: int | None = None) -> np.ndarray:
    """resnet_preprocessing._decode_and_center_crop: crop size/(size+padding) of the shorter side
    (float32 arithmetic, as TF does it), offsets rounded up, TF1 bicubic resize. Its padding since
    2021: round(size * (1/0.875 - 1)), a fixed 87.5% crop (before: 32 at every size)."""
    if padding is None:
        padding = round(size * (1 / 0.875 - 1))
    h, w, _ = tf.image.extract_jpeg_shape(jpeg).numpy()
    crop = int(np.float32(size / (size + padding)) * np.float32(min(h, w)))
    window = [(h - crop + 1) // 2, (w - crop + 1) // 2, crop, crop]
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    return tf.compat.v1.image.resize_bicubic([image], [size, size])[0].numpy()


def tpu_train(jpeg: bytes, size: int, window) -> np.ndarray:
    """resnet_preprocessing._decode_and_random_crop for a given sampled window (unflipped)."""
    h, w, c = tf.image.extract_jpeg_shape(jpeg).numpy()
    if sum(np.equal([h, w, c], [window[2], window[3], 3])) >= 3:  # the sampler gave up
        return tpu_eval(jpeg, size)
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    return tf.compat.v1.image.resize_bicubic([image], [size, size])[0].numpy()


def test_photos_are_real_and_not_square():
    assert len(PHOTOS) == 2
    for p in PHOTOS:
        h, w, _ = tf.image.extract_jpeg_shape(p.read_bytes()).numpy()
        assert (h, w) == (427, 640)


@pytest.mark.parametrize("size", [32, 128, 160, 224, 288, 299])
def test_eval_matches_tpu_on_photos_at_every_size(size):
    for p in PHOTOS:
        jpeg = p.read_bytes()
        ours = ip.center_crop_image(tf.constant(jpeg), size).numpy()
        ref = tpu_eval(jpeg, size)
        assert ours.shape == (size, size, 3)
        assert np.abs(ours - ref).max() <= 1.0, p.name


def test_eval_matches_tpu_on_digits(demo_raw):
    for p in _digits(demo_raw):
        jpeg = p.read_bytes()
        ours = ip.center_crop_image(tf.constant(jpeg), 224).numpy()
        assert np.abs(ours - tpu_eval(jpeg, 224)).max() <= 1.0, p.name


def test_crop_padding_flag_changes_only_the_crop():
    jpeg = PHOTOS[1].read_bytes()
    for padding in (0, 4):
        ours = ip.center_crop_image(tf.constant(jpeg), 32, crop_padding=padding).numpy()
        assert np.abs(ours - tpu_eval(jpeg, 32, padding)).max() <= 1.0
    assert np.abs(tpu_eval(jpeg, 32, 4) - tpu_eval(jpeg, 32, 32)).max() > 20


def test_the_old_fixed_padding_differs_from_tpus_current_rule_away_from_224():
    """The reason the default changed: at 128 px tpu's old fixed 32 crops 80%, its current 87.5%."""
    jpeg = PHOTOS[0].read_bytes()
    assert np.abs(tpu_eval(jpeg, 224, 32) - tpu_eval(jpeg, 224)).max() == 0
    assert np.abs(tpu_eval(jpeg, 128, 32) - tpu_eval(jpeg, 128)).max() > 20


def test_half_pixel_resize_is_what_the_reference_does_not_do():
    """The oracle can tell the two resizes apart: TF2's half-pixel bicubic is far off tpu's."""
    jpeg = PHOTOS[0].read_bytes()
    h, w, _ = tf.image.extract_jpeg_shape(jpeg).numpy()
    crop = int(np.float32(224 / 256) * np.float32(min(h, w)))
    image = tf.image.decode_and_crop_jpeg(jpeg, [(h - crop + 1) // 2, (w - crop + 1) // 2, crop, crop],
                                          channels=3)
    half_pixel = tf.image.resize(image, [224, 224], method="bicubic").numpy()
    diff = np.abs(half_pixel - tpu_eval(jpeg, 224))
    assert diff.mean() > 1.0 and diff.max() > 20


@pytest.mark.parametrize("min_area", [0.08, 0.35])
def test_train_crop_matches_tpu_for_the_sampled_window(min_area, demo_raw):
    jpegs = [p.read_bytes() for p in PHOTOS + _digits(demo_raw)]
    for i, jpeg in enumerate(jpegs):
        for k in range(4):
            seed = tf.constant([i, k], tf.int64)
            crop_seed, _ = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            window, _ = ip.crop_window(tf.constant(jpeg), crop_seed, min_area)
            ours = ip.train_image(tf.constant(jpeg), 224, seed, min_area, flip=False).numpy()
            assert np.abs(ours - tpu_train(jpeg, 224, window.numpy())).max() <= 1.0, (i, k)
            flipped = ip.train_image(tf.constant(jpeg), 224, seed, min_area, flip=True).numpy()
            assert np.array_equal(flipped, ours) or np.array_equal(flipped, ours[:, ::-1]), (i, k)


def test_sampler_failure_falls_back_to_the_centre_crop():
    """An area range no window can satisfy makes the sampler return the whole image: tpu then
    uses the eval crop, and so do we."""
    jpeg = tf.constant(PHOTOS[1].read_bytes())
    window, failed = ip.crop_window(jpeg, tf.constant([0, 0], tf.int64), min_area=1.0)
    assert bool(failed) and list(window.numpy()[2:]) == [427, 640]
    out = ip.train_image(jpeg, 64, tf.constant([0, 0], tf.int64), min_area=1.0, flip=False)
    assert np.abs(out.numpy() - tpu_eval(PHOTOS[1].read_bytes(), 64)).max() <= 1.0
