"""Shared fixtures: run the real `hvdtrain` command (optionally under mpirun) on real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HVDTRAIN = str(BIN / "hvdtrain")


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PATH=f"{BIN}:{env.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def run(args, np: int | None = None, timeout: float = 900, env=None, check: bool = False):
    """Run `hvdtrain ARGS` (under `mpirun -np N` when np is given); returns CompletedProcess."""
    cmd = [HVDTRAIN, *map(str, args)]
    if np is not None:
        cmd = ["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", "none", *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or cli_env())
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "raw"
    run(["demo-data", out], check=True)
    return out


@pytest.fixture(scope="session")
def demo_records(demo_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("records") / "demo"
    run(["prep", "--raw-data-dir", demo_raw, "--output-dir", out, "--train-shards", 16,
         "--validation-shards", 4], check=True)
    return out
