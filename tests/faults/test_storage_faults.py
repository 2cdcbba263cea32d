"""Full or unwritable output: a clear error, nothing corrupt that looks valid, earlier state intact.
Corrupt shards: train and eval stop naming them (or skip them and say so). Changed data: refused."""

import json
import resource
import shutil
import signal
import subprocess

import pytest
from support.fault_jobs import FAST

from conftest import LEDGER, cli_env, command, run
from hvdtrain.training import checkpoint

pytestmark = pytest.mark.integration


def _limited(args, max_file_bytes):
    """Run hvdtrain with a per-file size limit: writes past it fail like a full disk (EFBIG)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    res = subprocess.run(command(args), capture_output=True, text=True, env=cli_env(),
                         preexec_fn=limit, timeout=600)
    LEDGER.record(res.stdout)
    return res


def test_full_disk_during_checkpoint(demo_records, tmp_path):
    model = tmp_path / "m"
    args = ["train", "--data-dir", demo_records, "--model-dir", model, *FAST, "--train-steps", 10,
            "--checkpoint-every-steps", 5]
    assert run([*args[:-4], "--train-steps", 5, "--checkpoint-every-steps", 5]).returncode == 0
    res = _limited(args, 4 << 20)  # resnet18's checkpoint is ~90 MB: the next save cannot fit
    assert res.returncode != 0
    assert "cannot write" in res.stderr and "ckpt-00000010" in res.stderr, res.stderr
    assert checkpoint.latest(model)[1]["step"] == 5
    assert [p.name for p in checkpoint.checkpoint_root(model).iterdir()] == ["ckpt-00000005"]


def test_unwritable_model_dir(demo_records, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run(["train", "--data-dir", demo_records, "--model-dir", blocker / "m", *FAST,
               "--train-steps", 2])
    assert res.returncode != 0 and "is not writable" in res.stderr and str(blocker) in res.stderr


def test_full_disk_during_prep(demo_raw, tmp_path):
    out = tmp_path / "o"
    res = _limited(["prep", "--raw-data-dir", demo_raw, "--output-dir", out, "--train-shards", 2,
                    "--validation-shards", 1, "--workers", 1], 200_000)
    assert res.returncode != 0 and "train-0000" in res.stderr, res.stderr
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.glob("train-*") if not p.name.startswith(".")]


@pytest.fixture
def damaged(demo_records, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(demo_records, data)
    flipped = data / "train-00005-of-00016"
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 3] ^= 0x55
    flipped.write_bytes(bytes(raw))
    cut = data / "validation-00002-of-00004"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return data


def test_corrupt_shards_stop_train_and_eval_by_name(damaged, tmp_path):
    args = ["train", "--data-dir", damaged, "--model-dir", tmp_path / "m", *FAST, "--train-steps", 3]
    res = run(args, np=2)
    assert res.returncode != 0 and "train-00005-of-00016" in res.stderr, res.stderr
    ok = run(["train", "--data-dir", damaged, "--model-dir", tmp_path / "m", *FAST,
              "--train-steps", 3, "--skip-corrupt-shards"])
    assert ok.returncode == 0, ok.stderr
    assert "skipping 1 corrupt train shard" in ok.stdout and "train-00005-of-00016" in ok.stdout
    ev = run(["eval", "--data-dir", damaged, "--model-dir", tmp_path / "m"])
    assert ev.returncode != 0 and "validation-00002-of-00004" in ev.stderr, ev.stderr
    v = run(["verify", damaged])
    assert v.returncode == 1 and "train-00005" in v.stderr and "validation-00002" in v.stderr


def test_resume_on_changed_data_is_refused(demo_raw, demo_records, tmp_path):
    model = tmp_path / "m"
    args = ["--model-dir", model, *FAST, "--train-steps", 5, "--checkpoint-every-steps", 5]
    assert run(["train", "--data-dir", demo_records, *args]).returncode == 0
    other = tmp_path / "other"
    assert run(["prep", "--raw-data-dir", demo_raw, "--output-dir", other, "--train-shards", 16,
                "--validation-shards", 4, "--seed", 1]).returncode == 0
    res = run(["train", "--data-dir", other, *args[:-4], "--train-steps", 10])
    assert res.returncode != 0 and "trained on another data set" in res.stderr, res.stderr
    assert json.loads((other / "manifest.json").read_text())["num_classes"] == 10
