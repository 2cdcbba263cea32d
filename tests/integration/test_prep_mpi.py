"""`mpirun -np 2 hvdtrain prep` writes exactly the records one process writes."""

import json

import pytest

from conftest import run

pytestmark = pytest.mark.integration


def test_prep_under_mpirun_matches_one_process(demo_raw, demo_records, tmp_path):
    out = tmp_path / "mpi"
    res = run(["prep", "--raw-data-dir", demo_raw, "--output-dir", out, "--train-shards", 16,
               "--validation-shards", 4], np=2)
    assert res.returncode == 0, res.stderr
    assert "2 rank(s)" in res.stdout and "prep: done: 1797 images" in res.stdout
    one = json.loads((demo_records / "manifest.json").read_text())
    two = json.loads((out / "manifest.json").read_text())
    assert two == one  # same shards, same counts, same sha256: identical bytes
    assert run(["verify", out]).returncode == 0
