"""hvdtrain as its users run it: the SIF under Slurm and mpirun across 2 nodes (1 rank each) of the
simulated cluster, the same SIF on the workstation for eval, and the faults only a cluster has."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest
from support.cluster_fixtures import STEPS, TRAIN, apptainer, cluster, sbatch_run, sif  # noqa: F401
from support.cluster_fixtures import cluster_env as _env
from support.cluster_fixtures import stray_processes as _only_slurmd_left
from support.cluster_fixtures import train_report as _report
from support.cluster_fixtures import wait_until as _wait_until
from support.fault_jobs import FAST

from conftest import LEDGER, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

SEED_LINE = re.compile(r"^Top-1 accuracy = .*$", re.M)




def _head(cluster, *cmd, timeout=600, **env):  # noqa: F811
    """Run on the cluster's head namespace (where mpirun and the Slurm clients run)."""
    res = cluster.run(cluster.on_head(*cmd), timeout=timeout, **_env(**env))
    LEDGER.record(res.stdout)
    return res


def _on(cluster, cmd, timeout=600, **env):  # noqa: F811
    res = cluster.run(cmd, timeout=timeout, **_env(**env))
    LEDGER.record(res.stdout)
    return res


def _workstation(sif, *args, timeout=600):  # noqa: F811
    """`apptainer exec hvdtrain.sif hvdtrain ...` on the host: the workstation."""
    return subprocess.run([apptainer(), "exec", str(sif), "hvdtrain", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env={**_env(), "HOME": "/root"})




# ---------------------------------------------------------------------------- the workstation
def test_sif_runs_every_command_on_the_workstation(sif, demo_records, tmp_path):  # noqa: F811
    info = _workstation(sif, "info")
    assert info.returncode == 0 and "horovod_controllers  MPI" in info.stdout, info.stderr
    assert re.search(r"^onednn +on \(TF_ENABLE_ONEDNN_OPTS=1;", info.stdout, re.M), info.stdout
    for cmd in ("demo-data", "prep", "verify", "train", "eval", "bench", "info", "version"):
        res = _workstation(sif, cmd, "--help")
        assert res.returncode == 0 and "Usage: hvdtrain" in res.stdout, (cmd, res.stderr)
    assert _workstation(sif, "verify", demo_records).returncode == 0
    assert _workstation(sif, "demo-data", tmp_path / "raw").returncode == 0
    bench = _workstation(sif, "bench", "--json", "--model", "resnet18", "--image-size", 32,
                         "--batch-size", 8, "--steps", 1, "--windows", 1, "--warmup", 1, "--no-peak")
    assert bench.returncode == 0 and json.loads(bench.stdout.splitlines()[-1])["images_per_second"] > 0


# ------------------------------------------------------------------------ Slurm, as users submit
def test_sbatch_template_trains_across_both_nodes(sbatch_run):  # noqa: F811
    model, out = sbatch_run
    assert "world: 2 rank(s) on 2 host(s): n1, n2" in out, out[-3000:]
    rep = _report(model)
    sums = rep["rank_weight_checksums"]["at_end"]
    assert rep["num_ranks"] == 2 and rep["train_steps"] == STEPS and len(sums) == 2 and sums[0] == sums[1]


def test_health_check_template_times_every_node_and_feeds_the_plan(cluster, sif, tmp_path):  # noqa: F811
    out, log = tmp_path / "health.json", tmp_path / "health.out"
    small = ["--model", "resnet18", "--image-size", 32, "--batch-size", 8, "--num_intra_threads", 1,
             "--num_inter_threads", 1]  # after the template's own flags: they win
    res = cluster.run(cluster.on_head("sbatch", "--wait", "-N", 2, "--ntasks-per-node", 1, "-o", log,
                                      ROOT / "entrypoints" / "slurm-health-check.sbatch", *small),
                      timeout=900, cwd=ROOT, **_env(SIF=sif, OUT=out))
    text = log.read_text() if log.exists() else ""
    assert res.returncode == 0, res.stderr + text[-4000:]
    assert re.search(r"^n1 +\d", text, re.M) and re.search(r"^n2 +\d", text, re.M), text[-3000:]
    data = json.loads(out.read_text())
    assert set(data["hosts"]) == {"n1", "n2"}
    assert all(v["alone_images_per_second"] for v in data["hosts"].values())
    plan = _head(cluster, "hvdtrain", "plan", "--nodes", 256, "--ranks-per-node", 1, "--global-batch", 2048,
                 "--from-bench", out, timeout=120)
    assert plan.returncode == 0 and f"from {out}" in plan.stdout, plan.stderr


def test_workstation_eval_equals_eval_under_srun(cluster, sif, sbatch_run, demo_records):  # noqa: F811
    model, _ = sbatch_run
    local = _workstation(sif, "eval", "--data-dir", demo_records, "--model-dir", model,
                         "--eval-batch-size", 100)
    assert local.returncode == 0, local.stderr
    srun = _head(cluster, "srun", "--mpi=pmix", "-N", 2, "--ntasks-per-node", 1, apptainer(), "exec", sif,
                 "hvdtrain", "eval", "--data-dir", demo_records, "--model-dir", model,
                 "--eval-batch-size", 100, timeout=600)
    assert srun.returncode == 0, srun.stderr
    assert "world: 2 rank(s) on 2 host(s)" in srun.stdout
    ours, theirs = SEED_LINE.findall(local.stdout), SEED_LINE.findall(srun.stdout)
    assert len(ours) == 1 and ours == theirs and f"global_step = {STEPS}" in ours[0], (ours, theirs)


# --------------------------------------------------------------------------- the mpirun launcher
def test_mpirun_launcher_with_a_hostfile_gives_the_same_run(cluster, sif, sbatch_run, demo_records,  # noqa: F811
                                                           tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    before = cluster.counters("n1")
    res = _head(cluster, "sh", ROOT / "entrypoints" / "mpirun-singularity.sh", "train",
                "--data-dir", demo_records, "--model-dir", model, *TRAIN, timeout=900,
                NP=2, PPN=1, HOSTFILE=cluster.hostfile(), SIF=sif, BINDS=f"{demo_records},{tmp_path}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    after = cluster.counters("n1")
    assert "world: 2 rank(s) on 2 host(s): n1, n2" in res.stdout
    # Same flags, seed and ranks as the sbatch job: the same weights, bit for bit.
    assert _report(model)["rank_weight_checksums"] == _report(sbatch_run[0])["rank_weight_checksums"]
    # Every step's gradients (resnet18: 11.2 M parameters, 45 MB) crossed n1's link both ways.
    for way in ("rx", "tx"):
        assert after[way] - before[way] > STEPS * 40e6, (before, after)


def test_prep_across_nodes_writes_what_one_process_writes(cluster, sif, demo_raw, tmp_path):  # noqa: F811
    one, two = tmp_path / "one", tmp_path / "two"
    shards = ["--train-shards", 16, "--validation-shards", 4, "--no-progress"]
    assert _workstation(sif, "prep", "--raw-data-dir", demo_raw, "--output-dir", one, *shards).returncode == 0
    res = _on(cluster, cluster.mpirun(apptainer(), "exec", sif, "hvdtrain", "prep", "--raw-data-dir",
                                      demo_raw, "--output-dir", two, *shards))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 rank(s)" in res.stdout
    assert json.loads((two / "manifest.json").read_text()) == json.loads((one / "manifest.json").read_text())


def test_pbs_template_dry_run_prints_its_mpirun_command(sif, tmp_path):  # noqa: F811
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn2\n")
    (tmp_path / "data").mkdir()
    res = subprocess.run(["bash", str(ROOT / "entrypoints" / "pbs-seed-256.pbs")], capture_output=True,
                         text=True, timeout=60, cwd=ROOT,
                         env=_env(DRY_RUN=1, PBS_NODEFILE=nodefile, PBS_O_WORKDIR=ROOT, SIF=sif,
                                  DATA=tmp_path / "data", MODEL=tmp_path / "models" / "m",
                                  HOME=tmp_path))
    assert res.returncode == 0, res.stderr
    cmd = res.stdout.strip().splitlines()[-1]
    assert cmd.startswith("mpirun -np 4 ") and f"--hostfile {nodefile}" in cmd and "exec --bind" in cmd
    assert "train --train_batch_size 24576 --train_steps 4680" in cmd and str(sif) in cmd


# ------------------------------------------------------------------------ faults across nodes
def _job(cluster, *args, **env):  # noqa: F811
    """A 2-node job in the background; killed (whole process group) if it outlives 15 minutes."""
    cmd = cluster.mpirun(apptainer(), "exec", env.pop("sif"), "hvdtrain", *args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cluster.env(**_env(**env)), start_new_session=True)
    guard = threading.Timer(900, lambda: _killpg(proc))
    guard.daemon = True
    guard.start()
    return proc


def _killpg(proc) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_for_line(proc, pattern: str) -> list[str]:
    lines, rx = [], re.compile(pattern)
    for line in proc.stdout:
        lines.append(line)
        if rx.search(line):
            return lines
    raise AssertionError(f"the job ended before {pattern!r}:\n{''.join(lines)[-3000:]}")


def _rest(proc, timeout: float) -> tuple[int, str]:
    """The job's exit code and remaining output; a job still running after ``timeout`` is killed."""
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        _killpg(proc)
        out, _ = proc.communicate()
        raise AssertionError(f"the job still ran {timeout} s after the fault:\n{out[-3000:]}") from None


def test_link_down_mid_training_names_the_host_then_resumes(cluster, sif, demo_records, tmp_path):  # noqa: F811
    model = tmp_path / "model"
    args = ["train", "--data-dir", demo_records, "--model-dir", model, *FAST, "--train-steps", 20,
            "--checkpoint-every-steps", 5, "--num_intra_threads", 1, "--num_inter_threads", 1,
            "--stall-timeout", 10]
    job = _job(cluster, *args, sif=sif)
    lines = _wait_for_line(job, r"^step 7/20")
    cluster.link("n2", "down")
    down_at = time.monotonic()
    try:
        code, rest = _rest(job, 120)
    finally:
        took = time.monotonic() - down_at
        cluster.link("n2", "up")
    out = "".join(lines) + rest
    LEDGER.record(out)
    assert code != 0 and took < 10 + 30, (code, took, out[-3000:])
    assert re.search(r"error \(rank 0\): no training step finished .*rank 1 \(host n2\).*"
                     r"link of n2 is down", out), out[-3000:]
    _wait_until(lambda: not _only_slurmd_left(cluster), 60, lambda: _only_slurmd_left(cluster))
    res = _on(cluster, cluster.mpirun(apptainer(), "exec", sif, "hvdtrain", *args), timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"^resumed from .*ckpt-000000(05|10) \(step (5|10),", res.stdout, re.M), res.stdout
    assert _report(model)["train_steps"] == 20
    said = next(ln for ln in out.splitlines() if "link of n2 is down" in ln)
    print(f"link down: job ended {took:.1f} s after the link went down, exit {code}: {said}")


def test_model_dir_not_visible_on_every_node_is_refused(cluster, sif, demo_records):  # noqa: F811
    res = _on(cluster, cluster.mpirun(apptainer(), "exec", sif, "hvdtrain", "train", "--data-dir",
                                      demo_records, "--model-dir", "/tmp/node-local-model", *TRAIN))
    assert res.returncode != 0
    assert "--model-dir /tmp/node-local-model is not visible from rank 1 on n2" in res.stderr, res.stderr
    assert "step 1/" not in res.stdout


@pytest.mark.parametrize("what", ["sif", "bind"])
def test_missing_sif_or_bind_path_is_one_clear_error(cluster, sif, demo_records, tmp_path, what):  # noqa: F811
    env = {"NP": 2, "PPN": 1, "HOSTFILE": cluster.hostfile(), "SIF": sif,
           "BINDS": f"{demo_records},{tmp_path}"}
    if what == "sif":
        env["SIF"] = tmp_path / "nope.sif"
    else:
        env["BINDS"] = f"{demo_records},/scratch/not-there"
    res = _head(cluster, "sh", ROOT / "entrypoints" / "mpirun-singularity.sh", "train", "--data-dir",
                demo_records, "--model-dir", tmp_path / "m", *TRAIN, timeout=60, **env)
    assert res.returncode == 2 and "mpirun-singularity: error:" in res.stderr, res.stderr
    want = "nope.sif: no such image file" if what == "sif" else "/scratch/not-there does not exist"
    assert want in res.stderr, res.stderr


def test_ranks_without_pmi_are_an_error_not_n_single_rank_jobs(cluster, sif, demo_records, tmp_path):  # noqa: F811
    res = _head(cluster, "srun", "--mpi=none", "-N", 2, "--ntasks-per-node", 1, apptainer(), "exec", sif,
                "hvdtrain", "train", "--data-dir", demo_records, "--model-dir", tmp_path / "m", *TRAIN,
                timeout=300)
    assert res.returncode != 0
    assert "(srun) started 2 rank(s)" in res.stderr and "--mpi=pmix" in res.stderr, res.stderr[-3000:]
    assert "step 1/" not in res.stdout


def test_node_death_names_the_host(cluster, sif, demo_records, tmp_path):  # noqa: F811
    args = ["train", "--data-dir", demo_records, "--model-dir", tmp_path / "model", *FAST,
            "--train-steps", 20, "--checkpoint-every-steps", 5, "--num_intra_threads", 1,
            "--num_inter_threads", 1, "--stall-timeout", 10]
    job = _job(cluster, *args, sif=sif)
    lines = _wait_for_line(job, r"^step 7/20")
    killed = cluster.kill_node("n2")
    dead_at = time.monotonic()
    try:
        code, rest = _rest(job, 120)
    finally:
        took = time.monotonic() - dead_at
        cluster.restart_slurmd("n2")
    out = "".join(lines) + rest
    LEDGER.record(out)
    assert killed >= 2 and code != 0 and took < 10 + 30, (killed, code, took, out[-3000:])
    assert "n2" in out.split("step 7/20", 1)[1], out[-3000:]
    _wait_until(lambda: not _only_slurmd_left(cluster), 60, lambda: _only_slurmd_left(cluster))
    said = [ln for ln in out.split("step 7/20", 1)[1].splitlines() if "n2" in ln][:3]
    print(f"node death: job ended {took:.1f} s after n2's {killed} processes were killed, exit {code}: "
          + " | ".join(said))
