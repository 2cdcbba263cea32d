"""Bring your own data set: `hvdtrain index` on shards other tools wrote, and what prep leaves alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from support.foreign_formats import FORMATS, TPU_SHARDS, shard_path, tpu_converter, write

from conftest import run
from hvdtrain.data import manifest
from hvdtrain.engine import input_pipeline

EXPECT = {  # format name hvdtrain reports, label offset, synsets carried
    "tpu": ("tpu", 1, 10), "tpu-subdirs": ("tpu", 1, 10), "inception": ("inception", 1, 10),
    "tfds": ("tfds", 0, 0)}
TRAIN = ["--model", "resnet18", "--image-size", 32, "--train-batch-size", 32, "--train-steps", 3,
         "--warmup-steps", 1, "--log-every-steps", 1]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("fmt", FORMATS)
def test_index_detects_the_format_and_the_pipeline_reads_it(fmt, demo_raw, tmp_path):
    data = tmp_path / fmt
    labels = write(demo_raw, data, fmt)
    res = run(["index", data], check=True)
    name, offset, synsets = EXPECT[fmt]
    assert f"index: format {name} (" in res.stdout, res.stdout
    assert "index: done: 1,433 train + 364 validation images in 6 shards" in res.stdout

    man = manifest.load(data)
    assert (man.format, man.label_offset, man.num_classes, len(man.labels)) == (name, offset, 10, synsets)
    assert man.paths("train")[0] == shard_path(data, fmt, "train", 0, 4)
    assert run(["verify", data]).returncode == 0

    ds, _ = input_pipeline.eval_dataset(man, rank=0, size=1, batch=91, image_size=32)
    got = Counter(int(y) for _, ys, mask in ds for y, m in zip(ys.numpy(), mask.numpy(), strict=True) if m)
    assert got == Counter(labels["validation"])  # every image once, with its 0-based class


def test_train_and_eval_on_tfds_shards_with_the_manifest_elsewhere(demo_raw, tmp_path):
    """The data dir is never written to: the manifest lives elsewhere and says where the shards
    are. Indexing runs across 2 ranks."""
    data, man_path, model = tmp_path / "tfds", tmp_path / "meta" / "imagenet.json", tmp_path / "m"
    write(demo_raw, data, "tfds")
    before = _snapshot(data)
    man_path.parent.mkdir()
    run(["index", data, "--manifest", man_path], np=2, check=True)
    assert _snapshot(data) == before
    assert json.loads(man_path.read_text())["shard_dir"] == str(data.resolve())

    run(["train", "--data-dir", data, "--manifest", man_path, "--model-dir", model, *TRAIN], check=True)
    ev = run(["eval", "--data-dir", data, "--manifest", man_path, "--model-dir", model], check=True)
    result = json.loads((model / "eval_results.json").read_text())
    assert result["num_images"] == 364 and result["global_step"] == 3, ev.stdout
    assert _snapshot(data) == before


def test_tpu_converters_empty_shards_are_indexed_verified_and_skipped(demo_raw, tmp_path):
    """tpu's shipped shard counts on a small set: hundreds of empty shards, listed and never read."""
    data, model = tmp_path / "tpu", tmp_path / "m"
    data.mkdir()
    empty = tpu_converter(demo_raw, data)
    assert empty == {"train": 1024 - 717, "validation": 128 - 122}  # ceil(1433/1024)=2, ceil(364/128)=3
    res = run(["index", data], check=True)
    assert f"in 1152 shards ({sum(empty.values())} empty: listed and hashed, never read)" in res.stdout
    man = manifest.load(data)
    assert [man.split(s).num_shards for s in ("train", "validation")] == list(TPU_SHARDS.values())
    assert len(man.paths("train")) == 717 and min(man.train.counts) > 0
    assert run(["verify", data]).returncode == 0

    run(["train", "--data-dir", data, "--model-dir", model, *TRAIN], np=2, check=True)
    ev = run(["eval", "--data-dir", data, "--model-dir", model], np=2, check=True)
    result = json.loads((model / "eval_results.json").read_text())
    assert result["num_images"] == 364 and result["global_step"] == 3, ev.stdout


def test_every_shard_empty_is_refused_by_name(tmp_path):
    import tensorflow as tf

    data = tmp_path / "empty"
    data.mkdir()
    for split in ("train", "validation"):
        tf.io.TFRecordWriter(str(data / f"{split}-00000-of-00001")).close()
    res = run(["index", data])
    assert res.returncode == 1 and f"every train shard in {data} is empty" in res.stderr, res.stderr


@pytest.fixture
def read_only_copy(demo_raw, tmp_path):
    """tpu shards seen through a read-only bind mount (chmod does not stop root; a mount does)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: a read-only bind mount needs root")
        pytest.skip("a read-only bind mount needs root")
    data, ro = tmp_path / "tpu", tmp_path / "ro"
    write(demo_raw, data, "tpu")
    ro.mkdir()
    subprocess.run(["mount", "--bind", data, ro], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", ro], check=True)
        yield ro
    finally:
        subprocess.run(["umount", ro], check=True)


def test_index_on_a_read_only_dir_names_the_manifest_flag_before_reading(read_only_copy, tmp_path):
    before = _snapshot(read_only_copy)
    res = run(["index", read_only_copy])
    assert res.returncode == 1, res.stdout
    assert f"cannot write the manifest {read_only_copy / 'manifest.json'}" in res.stderr, res.stderr
    assert "pass --manifest PATH" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert "index: 4 train" not in res.stdout  # refused before a shard was listed or read
    elsewhere = tmp_path / "elsewhere.json"
    run(["index", read_only_copy, "--manifest", elsewhere], check=True)
    assert manifest.load(read_only_copy, elsewhere).train.num_images == 1433
    assert _snapshot(read_only_copy) == before


def test_shards_without_a_manifest_name_the_index_command(demo_raw, tmp_path):
    data = tmp_path / "tpu"
    write(demo_raw, data, "tpu-subdirs")
    for cmd in (["verify", data], ["train", "--data-dir", data, "--model-dir", tmp_path / "m", *TRAIN]):
        res = run(cmd)
        assert res.returncode == 1, res.stdout
        assert f"`hvdtrain index {data}`" in res.stderr and "6 TFRecord shard(s)" in res.stderr


def test_unknown_records_and_mixed_formats_are_refused_by_name(demo_raw, tmp_path):
    import tensorflow as tf

    odd = tmp_path / "odd"
    odd.mkdir()
    for split in ("train", "validation"):
        with tf.io.TFRecordWriter(str(odd / f"{split}-00000-of-00001")) as w:
            feats = {"pixels": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    res = run(["index", odd])
    # whichever worker fails first is reported: either split's shard, named
    assert res.returncode == 1 and "-00000-of-00001: records keyed pixels" in res.stderr
    assert "tfds: TensorFlow Datasets imagenet2012" in res.stderr

    mixed = tmp_path / "mixed"
    write(demo_raw, mixed, "tpu")
    write(demo_raw, mixed, "tfds")
    res = run(["index", mixed])
    assert res.returncode == 1 and "shards of more than one format" in res.stderr
    assert not (mixed / "manifest.json").exists()


def test_prep_never_overwrites_files_it_did_not_write(demo_raw, tmp_path):
    out = tmp_path / "out"
    write(demo_raw, out, "tpu")
    theirs = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run(["prep", "--raw-data-dir", demo_raw, "--output-dir", out, "--train-shards", 4,
               "--validation-shards", 2])
    assert res.returncode == 1
    assert "holds 6 file(s) that no earlier `hvdtrain prep` wrote" in res.stderr
    assert "train-00000-of-00004" in res.stderr and "--overwrite" in res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == theirs  # not a byte touched

    run(["index", out], check=True)  # an index manifest does not make the shards prep's either
    res = run(["prep", "--raw-data-dir", demo_raw, "--output-dir", out, "--train-shards", 4,
               "--validation-shards", 2])
    assert res.returncode == 1 and "manifest.json" in res.stderr

    run(["prep", "--raw-data-dir", demo_raw, "--output-dir", out, "--train-shards", 4,
         "--validation-shards", 2, "--overwrite"], check=True)
    assert "seed" in json.loads((out / "manifest.json").read_text())
    again = run(["prep", "--raw-data-dir", demo_raw, "--output-dir", out, "--train-shards", 4,
                 "--validation-shards", 2], check=True)  # its own output: resumes, no refusal
    assert "6 shard(s) already complete" in again.stdout


def test_everything_written_is_readable_under_the_umask(demo_records, demo_model, demo_raw, tmp_path):
    """Shards, manifests, checkpoints, reports and their directories: 0644/0755 under umask 022."""
    mask = os.umask(0o022)
    os.umask(mask)
    data = tmp_path / "indexed"
    write(demo_raw, data, "tfds")
    run(["index", data], check=True)
    model_dir, _ = demo_model
    checked = 0
    for root in (demo_records, model_dir, data / "manifest.json"):
        for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if p.is_relative_to(data) and p.name != "manifest.json":
                continue
            want = (0o777 if p.is_dir() else 0o666) & ~mask
            assert p.stat().st_mode & 0o777 == want, f"{p}: {oct(p.stat().st_mode & 0o777)}"
            checked += 1
    assert checked > 30
    assert any(p.suffix == ".index" for p in model_dir.rglob("*"))  # a checkpoint was among them


def test_copy_of_a_shard_set_keeps_the_format(demo_raw, tmp_path):
    """A manifest written by index travels with its shards (relative shard names)."""
    data = tmp_path / "inception"
    write(demo_raw, data, "inception")
    run(["index", data], check=True)
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    man = manifest.load(moved)
    assert man.shard_dir == moved and man.format == "inception"
    assert run(["verify", moved]).returncode == 0
