"""Shared fixtures: run the real `hvdtrain` command (optionally under mpirun) on real data.

The suite's expensive things are made once per pytest run and shared: the demo's raw tree and
records, and the demo model, trained once with exactly the `make demo` recipe. Every
`hvdtrain` run goes through `run()` or `support.fault_jobs.Job`, which add the training images it
processed to a ledger; the end of the run prints the ledger against the suite's budget (docs/development.md,
"Tests and their budget") and fails the run when the budget is blown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from hvdtrain.cluster.world import mpirun_command, mpirun_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HVDTRAIN = str(BIN / "hvdtrain")

# Training images the whole suite may process (hvdtrain runs on the host; the in-image smoke
# test is not counted). Measured 2026-11-26 (session 7): 42,816. Raise it only on purpose.
TRAINING_IMAGES_BUDGET = 50_000


def _demo_flags() -> list[str]:
    """`make demo`'s training flags, read from the Makefile: the recipe is written once."""
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^DEMO_TRAIN_FLAGS := ((?:.*\\\n)*.*)$", text, re.M)
    assert m, "Makefile has no DEMO_TRAIN_FLAGS"
    return m.group(1).replace("\\\n", " ").split()


DEMO = _demo_flags()
DEMO_STEPS = 165  # 15 epochs x 11 whole steps of 128 on the 1,433 training digits


def cli_env(**extra) -> dict:
    env = mpirun_env()
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def command(args, np: int | None = None) -> list[str]:
    cmd = [HVDTRAIN, *map(str, args)]
    return [*mpirun_command(np), *cmd] if np is not None else cmd


# --------------------------------------------------------------------------- the budget ledger
class Ledger:
    """Training images processed by the suite's hvdtrain runs, read from their own output."""

    def __init__(self):
        self.images = self.steps = self.runs = 0
        self.train_seconds = 0.0  # sum of "trained N steps in X s": the part that scales with the CPU
        self.demo_seconds = None  # wall time of the shared demo training: this machine's speed
        self.seconds = defaultdict(float)  # per test folder
        self.per_test = defaultdict(lambda: [0, 0.0])  # test id -> [images, training seconds]

    def record(self, output: str) -> None:
        plan = re.search(r"^plan: [\d,]+ train images, global batch ([\d,]+) ", output, re.M)
        if not plan:
            return
        start = re.search(r"^resumed from .*\(step (\d+),", output, re.M)
        done = re.search(r"^trained (\d+) steps in", output, re.M)
        logged = [int(s) for s in re.findall(r"^step (\d+)/\d+ ", output, re.M)]
        steps = int(done.group(1)) if done else max(logged, default=0) - int(start.group(1) if start else 0)
        timed = re.search(r"^trained \d+ steps in ([\d.]+) s", output, re.M)
        seconds = float(timed.group(1)) if timed else 0.0
        images = max(0, steps) * int(plan.group(1).replace(",", ""))
        self.train_seconds += seconds
        self.runs += 1
        self.steps += max(0, steps)
        self.images += images
        # a session fixture's run is charged to the test that first asked for it
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
        self.per_test[test][0] += images
        self.per_test[test][1] += seconds


LEDGER = Ledger()


def run(args, np: int | None = None, timeout: float = 900, env=None, check: bool = False):
    """Run `hvdtrain ARGS` (under `mpirun -np N` when np is given); returns CompletedProcess."""
    cmd = command(args, np)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or cli_env())
    LEDGER.record(res.stdout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def pytest_runtest_logreport(report):
    folder = report.nodeid.split("::")[0].rsplit("/", 1)[0] if "/" in report.nodeid else "tests"
    LEDGER.seconds[folder] += report.duration


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    tr.section("budget")
    for folder, secs in sorted(LEDGER.seconds.items(), key=lambda kv: -kv[1]):
        tr.write_line(f"{secs:8.1f} s  {folder}")
    verdict = "within" if LEDGER.images <= TRAINING_IMAGES_BUDGET else "OVER"
    tr.write_line(f"budget: {LEDGER.images:,} training images ({LEDGER.steps:,} steps in "
                  f"{LEDGER.runs} training runs), {verdict} the budget of "
                  f"{TRAINING_IMAGES_BUDGET:,}; {LEDGER.train_seconds:.1f} s of training steps")
    top = sorted(LEDGER.per_test.items(), key=lambda kv: -kv[1][1])[:8]
    for test, (images, seconds) in top:
        tr.write_line(f"{seconds:8.1f} s of training, {images:7,} images  {test}")
    if LEDGER.demo_seconds:
        tr.write_line(f"the demo's training (2 ranks, {DEMO_STEPS} steps) took "
                      f"{LEDGER.demo_seconds:.1f} s on this machine")


def pytest_sessionfinish(session, exitstatus):
    if LEDGER.images > TRAINING_IMAGES_BUDGET and exitstatus == 0:
        session.exitstatus = 1  # a blown budget fails CI on every machine, not only on slow ones


# ------------------------------------------------------------------------- shared, made once
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


@pytest.fixture(scope="session")
def demo_model(demo_records, tmp_path_factory):
    """The `make demo` training run (2 ranks), once per pytest run, evaluated at its end.

    Tests that need a trained model copy its model dir rather than train their own: the
    convergence check, exactly-once eval, resume across rank counts, kill-and-resume."""
    model_dir = tmp_path_factory.mktemp("model") / "demo"
    started = time.monotonic()
    res = run(["train", "--data-dir", demo_records, "--model-dir", model_dir, *DEMO, "--eval-at-end"],
              np=2)
    assert res.returncode == 0, res.stdout + res.stderr
    LEDGER.demo_seconds = time.monotonic() - started
    return model_dir, res.stdout
