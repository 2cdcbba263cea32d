"""Every bad input of `hvdtrain prep` gives a clear error naming the problem and a non-zero exit,
and leaves no manifest behind."""

import json
import shutil

import pytest

from conftest import run


@pytest.fixture
def raw(demo_raw, tmp_path):
    dst = tmp_path / "raw"
    shutil.copytree(demo_raw, dst)
    return dst


def _prep(raw, out, *extra):
    return run(["prep", "--raw-data-dir", raw, "--output-dir", out, "--train-shards", 4,
                "--validation-shards", 2, "--workers", 1, *extra])


def _assert_fails(res, out, *needles):
    assert res.returncode != 0, res.stdout
    for n in needles:
        assert n in res.stderr, res.stderr
    assert not (out / "manifest.json").exists()


def test_missing_train_folder(raw, tmp_path):
    shutil.rmtree(raw / "train")
    _assert_fails(_prep(raw, tmp_path / "o"), tmp_path / "o", str(raw / "train"), "not found")


def test_raw_data_dir_that_is_a_file_says_so(tmp_path):
    (tmp_path / "raw.tar").write_bytes(b"not a folder")
    _assert_fails(_prep(tmp_path / "raw.tar", tmp_path / "o"), tmp_path / "o",
                  f"--raw-data-dir {tmp_path / 'raw.tar'} is a file, not a directory")
    _assert_fails(_prep(tmp_path / "nowhere", tmp_path / "o"), tmp_path / "o",
                  f"--raw-data-dir {tmp_path / 'nowhere'} does not exist")


def test_empty_class_folder(raw, tmp_path):
    (raw / "train" / "n00000099").mkdir()
    _assert_fails(_prep(raw, tmp_path / "o"), tmp_path / "o", "n00000099", "is empty")


def test_labels_file_with_wrong_line_count(raw, tmp_path):
    labels = raw / "validation_labels.txt"
    labels.write_text("\n".join(labels.read_text().split()[:-3]) + "\n")
    _assert_fails(_prep(raw, tmp_path / "o"), tmp_path / "o", "validation_labels.txt", "must match")


def test_label_that_is_not_a_training_class(raw, tmp_path):
    labels = raw / "validation_labels.txt"
    lines = labels.read_text().split()
    lines[4] = "n99999999"
    labels.write_text("\n".join(lines) + "\n")
    _assert_fails(_prep(raw, tmp_path / "o"), tmp_path / "o", "validation_labels.txt:5", "n99999999")


def test_file_that_is_not_an_image(raw, tmp_path):
    bad = raw / "train" / "n00000003" / "readme.JPEG"
    bad.write_text("not a picture")
    res = _prep(raw, tmp_path / "o")
    _assert_fails(res, tmp_path / "o", f"bad image {bad}: not an image", "--skip-bad")
    assert res.stderr.count("readme.JPEG") == 1 and "BytesIO" not in res.stderr, res.stderr


def test_tpus_synset_labels_txt_is_the_labels_file_too(raw, tmp_path):
    """tensorflow/tpu's imagenet_to_gcs.py reads RAW/synset_labels.txt."""
    (raw / "validation_labels.txt").rename(raw / "synset_labels.txt")
    res = _prep(raw, tmp_path / "o")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["validation"]["num_images"] == 364
    (raw / "synset_labels.txt").unlink()
    _assert_fails(_prep(raw, tmp_path / "p"), tmp_path / "p", "validation_labels.txt and synset_labels.txt")


def test_truncated_image(raw, tmp_path):
    victim = sorted((raw / "validation").glob("*.JPEG"))[7]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    _assert_fails(_prep(raw, tmp_path / "o"), tmp_path / "o", victim.name)


def test_unwritable_output_dir(raw, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # root ignores permissions; a file in the path stops it for anyone
    res = _prep(raw, blocker / "out")
    assert res.returncode != 0 and "not writable" in res.stderr and str(blocker) in res.stderr


def test_too_many_shards_names_the_flag(raw, tmp_path):
    res = run(["prep", "--raw-data-dir", raw, "--output-dir", tmp_path / "o",
               "--validation-shards", 100000])
    _assert_fails(res, tmp_path / "o", "--validation-shards")


def test_skip_bad_skips_and_lists(raw, tmp_path):
    (raw / "train" / "n00000003" / "readme.JPEG").write_text("not a picture")
    out = tmp_path / "o"
    res = _prep(raw, out, "--skip-bad")
    assert res.returncode == 0, res.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert [s["file"] for s in man["skipped"]] == ["train/n00000003/readme.JPEG"]
    assert "readme.JPEG" in (out / "skipped.txt").read_text()
    assert man["train"]["num_images"] == sum(1 for _ in (raw / "train").rglob("*.JPEG")) - 1
    assert "skipped 1 bad image" in res.stdout
