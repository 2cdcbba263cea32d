"""Checkpoints are atomic: a failed save leaves the previous one valid; corrupt ones are skipped."""

import pytest
import tensorflow as tf

from hvdtrain.cluster import faults
from hvdtrain.training import checkpoint


def _ckpt(value):
    v = tf.Variable(float(value))
    return tf.train.Checkpoint(v=v), v


def test_save_then_latest(tmp_path):
    ck, _ = _ckpt(1.0)
    checkpoint.save(tmp_path, 10, ck, {"tag": "a"})
    checkpoint.save(tmp_path, 20, ck, {"tag": "b"})
    path, meta = checkpoint.latest(tmp_path)
    assert path.name == "ckpt-00000020" and meta["step"] == 20 and meta["tag"] == "b"


def test_failure_between_write_and_rename_keeps_previous(tmp_path, monkeypatch):
    ck, v = _ckpt(1.0)
    checkpoint.save(tmp_path, 10, ck, {})
    v.assign(2.0)
    monkeypatch.setenv(faults.FAIL_BEFORE_CKPT_RENAME, "1")
    with pytest.raises(checkpoint.CheckpointError, match="injected"):
        checkpoint.save(tmp_path, 20, ck, {})
    path, meta = checkpoint.latest(tmp_path)
    assert meta["step"] == 10
    restored, rv = _ckpt(0.0)
    restored.read(checkpoint.tf_prefix(path)).assert_consumed()
    assert float(rv) == 1.0


def test_corrupt_newest_is_skipped_and_partial_dirs_removed(tmp_path):
    ck, _ = _ckpt(1.0)
    checkpoint.save(tmp_path, 10, ck, {})
    newest = checkpoint.save(tmp_path, 20, ck, {})
    data = next(newest.glob("ckpt.data-*"))
    data.write_bytes(data.read_bytes()[:-4] + b"oops")
    partial = checkpoint.checkpoint_root(tmp_path) / ".tmp-ckpt-00000030-1"
    partial.mkdir()
    assert checkpoint.latest(tmp_path)[1]["step"] == 10
    assert checkpoint.remove_partial(tmp_path) == [partial] and not partial.exists()
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.resolve(newest)


def test_keep_bounds_disk_use(tmp_path):
    ck, _ = _ckpt(1.0)
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, step, ck, {}, keep=2)
    assert [p.name for p, _ in checkpoint.list_valid(tmp_path)] == ["ckpt-00000003", "ckpt-00000004"]
