"""`hvdtrain verify` passes intact data and names damaged shards."""

import os
import shutil

from conftest import run


def test_intact_data_verifies(demo_records):
    res = run(["verify", demo_records])
    assert res.returncode == 0, res.stderr
    assert "1797 records in 20 shards checked: all agree" in res.stdout


def test_flipped_and_truncated_shards_are_named(demo_records, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(demo_records, data)
    flipped, cut = data / "train-00003-of-00016", data / "validation-00001-of-00004"
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    cut.write_bytes(cut.read_bytes()[:-100])
    res = run(["verify", data])
    assert res.returncode == 1
    assert "train-00003-of-00016" in res.stderr and "validation-00001-of-00004" in res.stderr


def test_missing_manifest_is_a_clear_error(tmp_path):
    res = run(["verify", tmp_path])
    assert res.returncode == 1 and "manifest.json not found" in res.stderr


def test_relative_data_dir_as_make_demo_passes_it(demo_records):
    """`make demo` passes build/demo/records: a relative path must find the shards beside it."""
    rel = os.path.relpath(demo_records)
    assert not os.path.isabs(rel)
    res = run(["verify", rel])
    assert res.returncode == 0, res.stderr
    assert "all agree" in res.stdout
