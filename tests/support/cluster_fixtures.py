"""Fixtures of the simulated cluster (simcluster.py), imported by the test modules here: 2 nodes
with Slurm, and the SIF they run.

The cluster is made once per pytest run and torn down at its end; the teardown fails the run if
any namespace or daemon is left. The SIF is built with `make sif`, as a user builds it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LEDGER, ROOT
from support.fault_jobs import FAST
from support.simcluster import Cluster

# The short 2-node training run of the cluster tests (1 rank per node, 1 thread each).
STEPS = 20
TRAIN = [*FAST, "--train-steps", STEPS, "--log-every-steps", 5, "--checkpoint-every-steps", 10,
         "--num_intra_threads", 1, "--num_inter_threads", 1, "--stall-timeout", 30]


def apptainer() -> str:
    return (shutil.which("apptainer") or shutil.which("singularity")
            or str(ROOT / "build" / "apptainer" / "bin" / "apptainer"))


def cluster_env(**extra) -> dict:
    """What the cluster's commands run with: apptainer and this venv first on PATH."""
    return {"PATH": f"{Path(apptainer()).parent}:{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
            "APPTAINER_WRAPPER_BINDS": str(ROOT), **{k: str(v) for k, v in extra.items()}}


def train_report(model: Path) -> dict:
    return json.loads((model / "train_report.json").read_text())


def stray_processes(cluster) -> list[str]:
    """Processes still in the nodes' namespaces, other than their slurmd."""
    left = []
    for node in cluster.nodes:
        for pid in cluster.pids(node):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "slurmd" not in cmd and "node-enter" not in cmd:
                left.append(f"{node}: {pid} {cmd[:120]}")
    return left


def wait_until(ok, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, what()
        time.sleep(1)


@pytest.fixture(scope="session")
def sif() -> Path:
    if os.environ.get("HVDTRAIN_SKIP_IMAGE") == "1":
        pytest.skip("HVDTRAIN_SKIP_IMAGE=1 (CI always builds the image and the SIF)")
    fast = 'SIF_BUILD_FLAGS=--mksquashfs-args "-Xcompression-level 1"'  # 45% faster, 11% larger
    res = subprocess.run(["make", "-C", str(ROOT), "sif", fast], capture_output=True, text=True,
                         timeout=3600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    assert "horovod_controllers  MPI" in res.stdout, res.stdout[-3000:]
    path = ROOT / "hvdtrain.sif"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        why = "the simulated cluster needs root and Slurm (make test installs slurm-wlm as root)"
        if os.environ.get("CI") == "true":  # CI runs as root: a skip there would hide a broken set-up
            pytest.fail(why)
        pytest.skip(why)
    c = Cluster(2, ROOT / "build" / "cluster", keep=(ROOT, tmp_path_factory.getbasetemp()))
    try:
        c.up()
        c.start_slurm()
        yield c
    finally:
        c.down()
    assert c.leftovers() == [], c.leftovers()


@pytest.fixture(scope="session")
def sbatch_run(cluster, sif, demo_records, tmp_path_factory):
    """The shipped Slurm template's run of TRAIN on both nodes, uninterrupted: the reference."""
    model = tmp_path_factory.mktemp("sbatch") / "model"
    log = model.parent / "slurm.out"
    res = cluster.run(cluster.on_head("sbatch", "--wait", "-N", 2, "--ntasks-per-node", 1, "-o", log,
                                      ROOT / "entrypoints" / "slurm-seed-256.sbatch", *TRAIN),
                      timeout=900, cwd=ROOT, **cluster_env(DATA=demo_records, MODEL=model, SIF=sif))
    out = log.read_text() if log.exists() else ""
    LEDGER.record(out)
    assert res.returncode == 0, res.stdout + res.stderr + out[-5000:]
    return model, out
