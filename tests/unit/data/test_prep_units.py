"""Labelling, shuffling, sharding, atomic writes and resume of `prep`."""

import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from hvdtrain import atomic
from hvdtrain.data import prep, records


def _tree(root: Path, classes=("n02", "n01", "n03"), per_class=6, val_per_class=2):
    lines, k = [], 0
    for c in classes:
        (root / "train" / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20, 16), (10 * i, 50, 90)).save(root / "train" / c / f"{c}_{i}.JPEG")
    (root / "validation").mkdir()
    for c in sorted(classes):
        for _ in range(val_per_class):
            k += 1
            Image.new("RGB", (20, 16), (5, 5, 5)).save(root / "validation" / f"val_{k:04d}.JPEG")
            lines.append(c)
    (root / "validation_labels.txt").write_text("\n".join(lines) + "\n")
    return root


def test_labels_are_one_based_in_sorted_wnid_order(tmp_path):
    classes, train, val = prep.scan(_tree(tmp_path), None)
    assert classes == ["n01", "n02", "n03"]
    assert {(i.synset, i.label) for i in train} == {("n01", 1), ("n02", 2), ("n03", 3)}
    assert [i.synset for i in val] == ["n01", "n01", "n02", "n02", "n03", "n03"]


def test_validation_class_folders_are_accepted(tmp_path):
    root = _tree(tmp_path)
    for f in sorted((root / "validation").glob("*.JPEG"))[:2]:
        (root / "validation" / "n03").mkdir(exist_ok=True)
        f.rename(root / "validation" / "n03" / f.name)
    for f in (root / "validation").glob("*.JPEG"):
        f.unlink()
    _, _, val = prep.scan(root, None)
    assert [(i.synset, i.label) for i in val] == [("n03", 3), ("n03", 3)]


def test_shuffle_is_deterministic_and_mixes_classes(tmp_path):
    _, train, _ = prep.scan(_tree(tmp_path, per_class=20), None)
    a, b, c = prep.shuffled(train, 0), prep.shuffled(train, 0), prep.shuffled(train, 1)
    assert a == b and a != c and sorted(a, key=str) == sorted(train, key=str)
    shards = prep.split_balanced(a, 4)
    assert all(len(Counter(i.synset for i in s)) >= 2 for s in shards)


def test_balanced_split_has_no_empty_shards():
    shards = prep.split_balanced(list(range(10)), 4)
    assert [len(s) for s in shards] == [3, 3, 2, 2]
    assert [x for s in shards for x in s] == list(range(10))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "shard"
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_resume_skips_complete_shards_and_redoes_damaged_ones(tmp_path):
    raw = _tree(tmp_path / "raw")
    out = tmp_path / "out"
    cfg = prep.PrepConfig(raw, out, train_shards=3, validation_shards=2, workers=1, progress=False)
    first = prep.run_prep(cfg, log=lambda *_: None)
    name0 = first.train.shards[0].name
    name1 = first.train.shards[1].name
    mtime1 = (out / name1).stat().st_mtime_ns
    (out / name0).write_bytes(b"damaged")          # a corrupt shard must be rewritten
    lines = []
    second = prep.run_prep(cfg, log=lines.append)
    assert second.train.to_json() == first.train.to_json()
    assert (out / name1).stat().st_mtime_ns == mtime1  # an intact shard is not rewritten
    assert "4 shard(s) already complete" in lines[0]


def test_interrupted_prep_leaves_no_manifest_and_no_complete_looking_shard(tmp_path):
    raw = _tree(tmp_path / "raw")
    (raw / "train" / "n02" / "n02_3.JPEG").write_bytes(b"garbage")
    out = tmp_path / "out"
    with pytest.raises(prep.PrepError, match=r"n02_3\.JPEG"):
        prep.run_prep(prep.PrepConfig(raw, out, train_shards=1, validation_shards=1, workers=1,
                                      progress=False), log=lambda *_: None)
    assert not (out / "manifest.json").exists()
    assert not (out / records.shard_name("train", 0, 1)).exists()
    assert not list(out.glob(".tmp-*"))


def test_what_prep_writes_is_readable_by_others_under_the_usual_umask(tmp_path):
    raw = _tree(tmp_path / "raw")
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        prep.run_prep(prep.PrepConfig(raw, out, train_shards=2, validation_shards=1, workers=1,
                                      progress=False), log=lambda *_: None)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes
