"""Start hvdtrain jobs, watch their output, and hurt their ranks."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import LEDGER, cli_env, command

# Small and fast, but the real model, optimizer and Horovod path. Checkpoints by steps only: a
# time-based one (at a step that depends on the machine's speed) would make runs differ.
FAST = ["--model", "resnet18", "--image-size", 32, "--train-batch-size", 32, "--warmup-steps", 5,
        "--peak-lr", 0.2, "--min-crop-area", 0.35, "--no-random-flip", "--log-every-steps", 1,
        "--checkpoint-every-minutes", 120]


def resumable_copy(ref_dir: Path, tmp_path: Path) -> Path:
    """The shared demo run (conftest.demo_model), back at its step-150 checkpoint, as if it had
    stopped there: what kill-and-resume and stop-signal tests continue from."""
    model = tmp_path / "m"
    shutil.copytree(ref_dir, model)
    shutil.rmtree(model / "checkpoints" / "ckpt-00000165")
    for name in ("train_report.json", "eval_results.json"):
        (model / name).unlink()
    return model


class Job:
    """A running `[mpirun -np N] hvdtrain ...` whose output is collected line by line."""

    def __init__(self, args, np: int | None = None, env: dict | None = None):
        cmd = command(args, np)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=cli_env(**(env or {})), start_new_session=True)
        self.lines: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        LEDGER.record(self.output)
        with self._cv:
            self._cv.notify_all()

    @property
    def output(self) -> str:
        with self._cv:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 300) -> re.Match:
        rx, deadline = re.compile(pattern), time.monotonic() + timeout
        with self._cv:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if m := rx.search(line):
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and seen == len(self.lines)):
                    raise AssertionError(f"no line matching {pattern!r}:\n{self.output[-4000:]}")
                self._cv.wait(min(left, 1.0))

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"job still running after {timeout} s:\n{self.output[-4000:]}") from None

    def wait_reaping(self, pid: int, timeout: float) -> int:
        """wait(), then SIGKILL ``pid`` if it outlived the job (a SIGSTOPped rank does)."""
        try:
            return self.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def rank_pid(self, rank: int) -> int:
        """PID of one hvdtrain rank (found by its MPI rank in the environment)."""
        for _ in range(100):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    env = (proc / "environ").read_bytes().split(b"\0")
                    cmd = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if (b"hvdtrain" in cmd and b"mpirun" not in cmd
                        and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env
                        and _descends_from(int(proc.name), self.proc.pid)):
                    return int(proc.name)
            time.sleep(0.1)
        raise AssertionError(f"rank {rank} not found")


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def steps_logged(output: str) -> list[int]:
    return [int(m) for m in re.findall(r"^step (\d+)/", output, re.M)]
