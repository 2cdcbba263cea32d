"""The README's set-up on a fresh Debian 13 (trixie, Python 3.13), as a user runs it.

A debootstrapped Debian 13 (tests/support/debian_root.py) gets a clean copy of the project (what `git clone`
would give, with the working tree's changes) and this machine's package-client set-up, nothing
else. Inside it: `make install`, then `make demo` with a few training steps (demo data, prep,
verify, `mpirun -np 2` training, eval). The demo's full training is run by hand (bench/NOTES.md):
on the slowest CPUs it alone would take a fifth of CI's budget.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from support.debian_root import root, run

from conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.platform]

# A few steps of the demo's model: enough to prove every stage runs on the new platform.
SHORT_TRAIN = ("--model resnet18 --image-size 32 --train-batch-size 64 --train-steps 8 --warmup-epochs 0 "
               "--crop-padding 4 --no-random-flip --log-every-steps 4 --checkpoint-every-steps 4")


def project_files() -> list[str]:
    """What a clone holds, plus the working tree's new and changed files (not build/, .venv)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def debian13(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        why = "a Debian 13 root needs root and debootstrap (make test installs debootstrap as root)"
        if os.environ.get("CI") == "true":  # CI runs as root: a skip would hide a broken set-up
            pytest.fail(why)
        pytest.skip(why)
    r = root("trixie", ROOT / "build" / "platforms", ROOT / "build" / "platforms" / "trixie-root")
    src = r / "src"
    src.mkdir()
    subprocess.run(["tar", "-C", str(ROOT), "-cf", str(src / "project.tar"), "-T", "-"], check=True,
                   input="\n".join(project_files()), text=True)
    subprocess.run(["tar", "-C", str(src), "-xf", str(src / "project.tar")], check=True)
    (src / "project.tar").unlink()
    return r  # kept for a look after a failure; the next run (or `make clean`) replaces it


def test_make_install_and_a_short_demo_on_debian_13(debian13):
    script = f"""set -eux
. /etc/os-release; echo "os: $PRETTY_NAME"; python3 --version
cd /src
make install
.venv/bin/hvdtrain info
make demo DEMO_TRAIN_FLAGS='{SHORT_TRAIN}'
"""
    res = run(debian13, script, timeout=3600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-8000:]
    assert re.search(r"^os: Debian GNU/Linux 13 \(trixie\)$", out, re.M), out[-3000:]
    assert re.search(r"^python +3\.13\.\d+$", out, re.M), out[-3000:]
    assert re.search(r"^tensorflow +2\.21\.\d+$", out, re.M), out[-3000:]
    assert re.search(r"^horovod_controllers +MPI$", out, re.M), out[-3000:]
    model = debian13 / "src" / "build" / "demo" / "model"
    report = json.loads((model / "train_report.json").read_text())
    assert report["num_ranks"] == 2 and report["train_steps"] == 8
    ev = json.loads((model / "eval_results.json").read_text())
    assert ev["num_images"] == 364 and ev["global_step"] == 8 and 0.0 <= ev["top1"] <= 1.0
