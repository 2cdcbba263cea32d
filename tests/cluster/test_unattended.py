"""Unattended runs on the simulated Slurm cluster, with the shipped template from the SIF: a time
limit that falls mid-run, a node that dies, scancel. No person acts between submit and the end;
the job's own log and the run's report say what happened and what it cost."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from support.cluster_fixtures import (  # noqa: F401  (fixtures)
    STEPS,
    TRAIN,
    cluster,
    cluster_env,
    sbatch_run,
    sif,
    stray_processes,
    train_report,
    wait_until,
)

from conftest import LEDGER, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

TEMPLATE = ROOT / "entrypoints" / "slurm-train.sbatch"
# Open MPI passes these to every rank (the fault hook and the restart budget are read there).
FORWARD = {"OMPI_MCA_mca_base_env_list": "HVDTRAIN_INJECT_STEP_DELAY"}


def _submit(cluster, sbatch_args, log: Path, extra=(), **env) -> str:  # noqa: F811
    """sbatch the shipped template for TRAIN (+ ``extra`` flags, which win) on both nodes."""
    res = cluster.run(cluster.on_head("sbatch", "--parsable", "-N", 2, "--ntasks-per-node", 1, "-o", log,
                                      *sbatch_args, TEMPLATE, *TRAIN, *extra),
                      timeout=60, cwd=ROOT, **cluster_env(**FORWARD, **env))
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def _job(cluster, job: str) -> dict:  # noqa: F811
    res = cluster.run(cluster.on_head("scontrol", "-o", "show", "job", job), timeout=30)
    return dict(kv.split("=", 1) for kv in res.stdout.split() if "=" in kv)


def _wait_done(cluster, job: str, timeout: float) -> dict:  # noqa: F811
    """The job's record once it has ended for good (a requeued job passes through PENDING)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _job(cluster, job)
        if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            return info
        time.sleep(2)
    subprocess.run(cluster.on_head("scancel", job), env=cluster.env(), timeout=30)
    raise AssertionError(f"job {job} still not done after {timeout} s: {_job(cluster, job)}")


def _wait_for_log(log: Path, pattern: str, timeout: float, after: str = "") -> float:
    """When ``pattern`` appears in the job's log (past the first ``after``, if given)."""
    deadline, rx = time.monotonic() + timeout, re.compile(pattern, re.M)
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if after:
            text = text.split(after, 1)[1] if after in text else ""
        if rx.search(text):
            return time.monotonic()
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {log} after {timeout} s:\n"
                         f"{log.read_text()[-3000:] if log.exists() else '(no log)'}")


def test_a_time_limit_mid_run_saves_requeues_and_finishes(cluster, sif, demo_records, sbatch_run,  # noqa: F811
                                                          tmp_path):
    """Slurm's warning 60 s before a 2-minute limit lands in the first attempt (slowed to 8 s a
    step); the job saves, requeues itself and the resumed attempt finishes the same weights."""
    model, log = tmp_path / "model", tmp_path / "slurm.out"
    job = _submit(cluster, ["--time=2", "--signal=B:USR1@60"], log, DATA=demo_records, MODEL=model, SIF=sif,
                  HVDTRAIN_INJECT_STEP_DELAY=8)
    info = _wait_done(cluster, job, 900)
    out = log.read_text()
    LEDGER.record(out)
    assert info["JobState"] == "COMPLETED", (info, out[-4000:])
    assert re.search(r"run-unattended: .* USR1: asking the ranks to save", out), out[-4000:]
    assert "saved (75)" in out and f"scontrol requeue {job}" in out, out[-4000:]
    assert re.search(r"^resumed from .*ckpt-000000\d\d \(step \d+,", out, re.M), out[-4000:]
    rep = train_report(model)
    assert rep["last_step"] == STEPS and rep["attempts"]["attempts"] == 2, rep["attempts"]
    assert rep["attempts"]["history"][0].endswith(f"ended: stopped by SIGUSR1 at step "
                                                  f"{rep['start_step']}"), rep["attempts"]
    reference = train_report(sbatch_run[0])["rank_weight_checksums"]["trainable_at_end"]
    assert rep["rank_weight_checksums"]["trainable_at_end"] == reference
    print(f"time limit: {rep['attempts']['history']}; lost {rep['attempts']['seconds_lost_to_faults']} s")


def test_a_dead_node_is_left_out_and_the_job_finishes_on_the_other(cluster, sif, demo_records,  # noqa: F811
                                                                 tmp_path):
    model, log = tmp_path / "model", tmp_path / "slurm.out"
    job = _submit(cluster, [], log, extra=["--checkpoint-every-steps", 5, "--log-every-steps", 1],
                  DATA=demo_records, MODEL=model, SIF=sif, HVDTRAIN_INJECT_STEP_DELAY=2,
                  HVDTRAIN_PROBE_SECONDS=15)
    _wait_for_log(log, r"^step 7/20", 600)
    killed = cluster.kill_node("n2")
    dead_at = time.monotonic()
    try:
        resumed = _wait_for_log(log, r"^step \d+/20", 600, after="restarting at once on n1")
        info = _wait_done(cluster, job, 600)
    finally:
        cluster.restart_slurmd("n2")
    out = log.read_text()
    LEDGER.record(out)
    assert killed >= 2 and info["JobState"] == "COMPLETED", (info, out[-4000:])
    assert "lost n2: restarting at once on n1, 1 rank(s), in this allocation" in out, out[-4000:]
    rep = train_report(model)
    assert rep["num_ranks"] == 1 and rep["last_step"] == STEPS
    att = rep["attempts"]
    assert att["attempts"] == 2 and att["hosts_left_out"] == ["n2"] and att["seconds_lost_to_faults"] > 0
    assert "left out n2" in att["history"][1] and "after died at step" in att["history"][1]
    wait_until(lambda: not stray_processes(cluster), 60, lambda: stray_processes(cluster))
    print(f"node death: training resumed on n1 {resumed - dead_at:.1f} s after n2 died; "
          f"{att['history'][1]}; lost {att['seconds_lost_to_faults']} s in all")


def test_scancel_saves_and_leaves_nothing_running(cluster, sif, demo_records, tmp_path):  # noqa: F811
    model, log = tmp_path / "model", tmp_path / "slurm.out"
    job = _submit(cluster, [], log, extra=["--log-every-steps", 1], DATA=demo_records, MODEL=model, SIF=sif,
                  HVDTRAIN_INJECT_STEP_DELAY=1)
    _wait_for_log(log, r"^step 3/20", 600)
    cluster.run(cluster.on_head("scancel", job), timeout=30)
    info = _wait_done(cluster, job, 120)
    out = log.read_text()
    LEDGER.record(out)
    # Slurm's TERM reaches the batch shell, mpirun and rank 0 at once: the ranks agree at the next
    # step boundary, rank 0 saves, every rank exits 75, within KillWait. mpirun, being stopped, no
    # longer forwards the ranks' output: the model dir is the witness.
    assert info["JobState"] == "CANCELLED" and "TERM: asking the ranks to save" in out, (info, out[-4000:])
    rep = train_report(model)
    assert rep["stopped_by"] in ("SIGTERM", "SIGUSR1") and rep["last_step"] > 3, rep
    assert rep["attempts"]["history"][-1].endswith(f"ended: stopped by {rep['stopped_by']} at step "
                                                   f"{rep['last_step']}")
    from hvdtrain.training import checkpoint

    found = checkpoint.latest(model)  # verified: every file's sha256 matches its meta.json
    assert found and found[1]["step"] == rep["last_step"], out[-3000:]
    wait_until(lambda: not stray_processes(cluster), 60, lambda: stray_processes(cluster))


def test_a_spent_restart_budget_ends_the_job_at_its_checkpoint(cluster, sif, demo_records, tmp_path):  # noqa: F811
    """With HVDTRAIN_MAX_RESTARTS=0 a warning signal still saves, but the job is not requeued: it
    ends with status 75 and says how to continue."""
    model, log = tmp_path / "model", tmp_path / "slurm.out"
    job = _submit(cluster, [], log, extra=["--log-every-steps", 1], DATA=demo_records, MODEL=model, SIF=sif,
                  HVDTRAIN_INJECT_STEP_DELAY=1, HVDTRAIN_MAX_RESTARTS=0)
    _wait_for_log(log, r"^step 3/20", 600)
    cluster.run(cluster.on_head("scancel", "--batch", "--signal=USR1", job), timeout=30)
    info = _wait_done(cluster, job, 300)
    out = log.read_text()
    LEDGER.record(out)
    assert "USR1: asking the ranks to save" in out and "saved (75)" in out, (info, out[-4000:])
    assert ("the restart budget is spent (0 of HVDTRAIN_MAX_RESTARTS=0): not requeued; resubmit to "
            "continue from the checkpoint") in out and "scontrol requeue" not in out, out[-4000:]
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "75:0" and info["Restarts"] == "0", info
    rep = train_report(model)
    assert rep["stopped_by"] == "SIGUSR1" and rep["last_step"] < STEPS, rep
    wait_until(lambda: not stray_processes(cluster), 60, lambda: stray_processes(cluster))
