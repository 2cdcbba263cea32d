"""Crash during a checkpoint save, and non-finite loss: the previous checkpoint stays valid."""

import json

import pytest
from support.fault_jobs import FAST

from conftest import run
from hvdtrain.cluster import faults
from hvdtrain.training import checkpoint

pytestmark = pytest.mark.integration


def _train(data, model, steps, *extra, env=None):
    from conftest import cli_env

    return run(["train", "--data-dir", data, "--model-dir", model, *FAST, "--train-steps", steps,
                "--checkpoint-every-steps", 2, *extra], env=cli_env(**(env or {})))


def test_crash_between_write_and_rename_keeps_previous_checkpoint(demo_records, tmp_path):
    model = tmp_path / "m"
    assert _train(demo_records, model, 4).returncode == 0
    res = _train(demo_records, model, 6, env={faults.FAIL_BEFORE_CKPT_RENAME: "1"})
    assert res.returncode != 0 and "injected failure" in res.stderr
    assert checkpoint.latest(model)[1]["step"] == 4
    # a save killed outright leaves its temporary directory: ignored, then removed on start
    partial = checkpoint.checkpoint_root(model) / ".tmp-ckpt-00000006-999"
    partial.mkdir()
    (partial / "ckpt.index").write_bytes(b"half")
    res = _train(demo_records, model, 6)
    assert res.returncode == 0, res.stderr
    assert f"removed unfinished checkpoint {partial}" in res.stdout
    assert "resumed from" in res.stdout and "ckpt-00000004" in res.stdout
    assert checkpoint.latest(model)[1]["step"] == 6 and not partial.exists()


def test_nan_loss_stops_with_step_and_lr(demo_records, tmp_path):
    model = tmp_path / "m"
    res = _train(demo_records, model, 8, env={faults.NAN_AT_STEP: "5"})
    assert res.returncode != 0
    assert "not finite at step 5" in res.stderr and "LR" in res.stderr, res.stderr
    assert "ckpt-00000004" in res.stderr  # the last good checkpoint, named
    path, meta = checkpoint.latest(model)
    assert meta["step"] == 4 and checkpoint.is_valid(path)


def test_bad_steps_can_be_skipped_within_a_bound(demo_records, tmp_path):
    res = _train(demo_records, tmp_path / "m", 6, "--max-bad-steps", 1,
                 env={faults.NAN_AT_STEP: "5"})
    assert res.returncode == 0, res.stderr
    assert "update skipped (1 of at most 1)" in res.stdout
    rep = json.loads((tmp_path / "m" / "train_report.json").read_text())
    assert rep["skipped_steps"] == 1 and rep["train_steps"] == 6
