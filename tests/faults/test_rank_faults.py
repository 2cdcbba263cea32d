"""A killed or stalled rank ends the whole job quickly with a clear message; a rerun resumes
and finishes exactly as the uninterrupted run would have."""

import json
import os
import re
import signal
import time

import pytest
from support.fault_jobs import FAST, Job, resumable_copy, steps_logged

from conftest import DEMO, run
from hvdtrain.cluster import faults

pytestmark = pytest.mark.integration

def test_kill_one_rank_then_resume_matches_uninterrupted(demo_model, demo_records, tmp_path):
    """Resume the shared `make demo` run from its step-150 checkpoint, kill rank 1 five steps on,
    rerun: the job ends at once naming the rank, and the rerun finishes exactly as the
    uninterrupted demo run did (same losses, same weights, same top-1). The uninterrupted run is
    the suite's one demo model, so the test trains 20 steps instead of a reference of 165."""
    ref_dir, ref_out = demo_model
    model = resumable_copy(ref_dir, tmp_path)
    args = ["train", "--data-dir", demo_records, "--model-dir", model, *DEMO, "--eval-at-end",
            "--log-every-steps", 5]  # logs more often than the demo; the numbers are the same
    job = Job(args, np=2)
    job.wait_for(r"^step 155/165")
    os.kill(job.rank_pid(1), signal.SIGKILL)
    killed_at = time.monotonic()
    code = job.wait(timeout=120)
    took = time.monotonic() - killed_at
    assert code != 0 and took < 60, (code, took)
    assert "rank 1" in job.output and "signal 9" in job.output  # mpirun names the rank and cause
    assert not (model / "checkpoints" / "ckpt-00000165").exists(), "killed before the end"

    res = run(args, np=2)
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout and "ckpt-00000150" in res.stdout
    rep = json.loads((model / "train_report.json").read_text())
    assert rep["start_step"] == 150 and rep["train_steps"] == 165
    ref_rep = json.loads((ref_dir / "train_report.json").read_text())
    top1 = json.loads((model / "eval_results.json").read_text())["top1"]
    ref_top1 = json.loads((ref_dir / "eval_results.json").read_text())["top1"]
    assert ref_top1 >= 0.93, ref_top1
    # Same seed, same ranks: the resumed run is the uninterrupted one, step for step.
    ours, theirs = dict(_losses(res.stdout)), dict(_losses(ref_out))
    common = sorted(set(ours) & set(theirs))
    assert common == [160, 165] and all(ours[s] == theirs[s] for s in common), (ours, theirs)
    assert sorted(ours) == [155, 160, 165] and top1 == ref_top1, (top1, ref_top1)
    assert rep["rank_weight_checksums"]["at_end"] == ref_rep["rank_weight_checksums"]["at_end"]


def _losses(stdout: str) -> list[tuple[int, str]]:
    return [(int(step), line) for line, step in
            re.findall(r"^(step (\d+)/\d+ epoch \S+ loss \S+)", stdout, re.M)]


@pytest.mark.parametrize("how", ["hung-main-thread", "frozen-process"])
def test_stalled_rank_becomes_an_error_not_a_hang(demo_records, tmp_path, how):
    """A rank stuck in its own code or frozen whole (SIGSTOP, which Horovod's own stall check
    cannot see): the progress watchdog ends the job and its heartbeats name rank 1."""
    env = {faults.STALL: "1:8"} if how == "hung-main-thread" else None
    job = Job(["train", "--data-dir", demo_records, "--model-dir", tmp_path / "m", *FAST,
               "--train-steps", 400, "--stall-timeout", 10], np=2, env=env)
    job.wait_for(r"^step 5/400")
    stalled_at = time.monotonic()
    rank1 = job.rank_pid(1)
    if how == "frozen-process":
        os.kill(rank1, signal.SIGSTOP)
    code = job.wait_reaping(rank1, timeout=120)
    assert code != 0 and time.monotonic() - stalled_at < 60, job.output[-3000:]
    out = job.output.lower()
    # Rank 0's message, not rank 1's own: mpirun sends SIGCONT when it tears a job down, so a
    # frozen rank 1 may yet print its view of itself.
    if how == "frozen-process":  # rank 0's watchdog names the rank whose heartbeat stopped
        assert re.search(r"error \(rank 0\): no training step finished .*rank 1 \(host .*"
                         r"not been heard from", out), out[-3000:]
    else:  # alive, beating, but never entered the step the other rank waits in: either rank says so
        assert re.search(r"error \(rank \d\): no training step finished .*rank 1 \(host .*"
                         r"stuck outside the training step", out), out[-3000:]


def test_soak_five_kill_and_resume_cycles(demo_records, tmp_path):
    """Killed at random steps five times, the run still finishes; the work redone per cycle is at
    most one checkpoint interval; the final checkpoint loads and evaluates."""
    import random

    rng, model, total_steps, interval = random.Random(7), tmp_path / "m", 30, 3
    args = ["train", "--data-dir", demo_records, "--model-dir", model, *FAST,
            "--train-steps", total_steps, "--checkpoint-every-steps", interval]
    executed, cycles = 0, 0
    while cycles < 5:
        job = Job(args, np=2)
        start = 0
        if m := _resumed(job):
            start = m
        kill_at = rng.randint(start + 1, min(total_steps - 1, start + 2 * interval))
        job.wait_for(rf"^step {kill_at}/{total_steps}")
        os.kill(job.rank_pid(rng.randint(0, 1)), signal.SIGKILL)
        assert job.wait(timeout=120) != 0
        done = steps_logged(job.output)
        executed += len(done)
        cycles += 1
    final = run(args, np=2)
    assert final.returncode == 0, final.stderr
    executed += len(steps_logged(final.stdout))
    assert executed - total_steps <= cycles * interval, (executed, total_steps)
    ev = run(["eval", "--data-dir", demo_records, "--model-dir", model, "--eval-batch-size", 100])
    assert ev.returncode == 0, ev.stderr
    assert json.loads((model / "eval_results.json").read_text())["global_step"] == total_steps


def _resumed(job) -> int | None:
    m = job.wait_for(r"^(resumed from .*step (\d+),|step 1/)")
    return int(m.group(2)) if m.group(2) else None
