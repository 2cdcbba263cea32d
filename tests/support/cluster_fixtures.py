"""Fixtures of the simulated cluster (simcluster.py), imported by the test modules here: 2 nodes
with Slurm, and the SIF they run.

The cluster is made once per pytest run and torn down at its end; the teardown fails the run if
any namespace or daemon is left. The SIF is built with `make sif`, as a user builds it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from support.simcluster import Cluster


def apptainer() -> str:
    return (shutil.which("apptainer") or shutil.which("singularity")
            or str(ROOT / "build" / "apptainer" / "bin" / "apptainer"))


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
