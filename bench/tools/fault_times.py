"""How fast a 2-rank job ends when one rank dies, hangs or freezes, and what it says.

Usage: python bench/tools/fault_times.py PREP_OUTPUT_DIR   (e.g. build/demo/records after `make demo`)
Prints, per fault: seconds from the fault to mpirun's exit, the exit code and the diagnosing line.
"""

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from support.fault_jobs import FAST, Job

from hvdtrain.cluster import faults


def measure(data_dir: str, how: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {faults.STALL: "1:8"} if how == "hung" else None
        job = Job(["train", "--data-dir", data_dir, "--model-dir", Path(tmp) / "m", *FAST,
                   "--train-steps", 400, "--stall-timeout", 10], np=2, env=env)
        job.wait_for(r"^step 5/400")
        rank1 = job.rank_pid(1)
        if how == "hung":
            job.wait_for(r"^step 7/400")
        at = time.monotonic()
        if how == "kill -9":
            os.kill(rank1, signal.SIGKILL)
        elif how == "SIGSTOP":
            os.kill(rank1, signal.SIGSTOP)
        code = job.wait_reaping(rank1, timeout=120)
        took = time.monotonic() - at
        why = next((ln for ln in job.lines if "hvdtrain: error" in ln or "exited on signal" in ln), "?")
        print(f"{how:8s} ended in {took:5.1f} s, exit {code}: {why.strip()}")


if __name__ == "__main__":
    for fault in ("kill -9", "hung", "SIGSTOP"):
        measure(sys.argv[1], fault)
