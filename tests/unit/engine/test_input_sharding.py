"""Ranks read disjoint records that together cover the data, for file- and record-level shards;
evaluation pads so each rank runs the same number of steps."""


import pytest
import tensorflow as tf

from hvdtrain.data import manifest, records
from hvdtrain.engine import input_pipeline


def _names(ds):
    return [records.parse_full(s.numpy())[records.FILENAME] for s in ds]


@pytest.mark.parametrize("split,size", [("train", 2), ("train", 3), ("validation", 3),
                                        ("validation", 5), ("validation", 7)])
def test_rank_records_disjoint_and_complete(demo_records, split, size):
    man = manifest.load(demo_records)
    files = [str(p) for p in man.paths(split)]
    per_rank = [_names(input_pipeline.rank_records(files, r, size)) for r in range(size)]
    flat = [n for names in per_rank for n in names]
    assert len(flat) == len(set(flat)) == man.split(split).num_images
    if split == "validation":  # the counts eval relies on, known to every rank from the manifest
        assert [len(n) for n in per_rank] == input_pipeline.eval_counts(man, size)


def test_eval_dataset_pads_to_equal_steps_with_zero_mask(demo_records):
    man = manifest.load(demo_records)
    steps_seen, real = [], 0
    for rank in range(3):
        ds, steps = input_pipeline.eval_dataset(man, rank, 3, batch=50, image_size=32)
        batches = list(ds)
        steps_seen.append(len(batches))
        assert len(batches) == steps
        real += int(sum(float(tf.reduce_sum(m)) for _, _, m in batches))
    assert len(set(steps_seen)) == 1 and real == man.validation.num_images


def test_train_batches_have_the_right_shape_and_labels(demo_records):
    man = manifest.load(demo_records)
    ds = input_pipeline.train_dataset(man, 0, 2, batch=16, image_size=32)
    images, labels = next(iter(ds))
    assert images.shape == (16, 32, 32, 3) and images.dtype == tf.float32
    assert int(tf.reduce_min(labels)) >= 0 and int(tf.reduce_max(labels)) <= 9


def _stream_names(demo_records, rank, size, start, n):
    man = manifest.load(demo_records)
    files = [str(p) for p in man.paths("train")]
    counts = man.train.counts
    ds = input_pipeline.train_records(files, counts, rank, size, seed=5, block=100, start_records=start)
    return _names(ds.take(n))


@pytest.mark.parametrize("size", [2, 20])  # file-level and record-level shards
def test_training_stream_is_a_function_of_position(demo_records, size):
    whole = _stream_names(demo_records, 1, size, 0, 900)
    assert _stream_names(demo_records, 1, size, 700, 200) == whole[700:900]


def test_each_epoch_covers_the_ranks_records_in_a_new_order(demo_records):
    man = manifest.load(demo_records)
    n = input_pipeline.rank_counts(man.train.counts, 2)[0]
    names = _stream_names(demo_records, 0, 2, 0, 2 * n)
    first, second = names[:n], names[n:]
    assert sorted(first) == sorted(second) and len(set(first)) == n and first != second


def test_augmented_batches_are_a_function_of_position(demo_records):
    """Same step, same pixels: what makes a resumed run continue exactly."""
    man = manifest.load(demo_records)

    def batches(start_step, n):
        ds = input_pipeline.train_dataset(man, 1, 2, batch=16, image_size=32, seed=3,
                                          start_step=start_step)
        return [(i.numpy(), lab.numpy()) for i, lab in ds.take(n)]

    whole, resumed = batches(0, 50), batches(45, 5)  # 50 x 16 > one epoch of this rank (716)
    for (a, la), (b, lb) in zip(whole[45:], resumed, strict=True):
        assert (la == lb).all() and (a == b).all()
    assert (whole[0][0] == batches(0, 1)[0][0]).all()  # a rerun from 0 is identical too
