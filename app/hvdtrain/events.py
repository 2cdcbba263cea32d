"""The run's events, and where they go: one sink for the log, TensorBoard and the report.

The training loop says what happened (``step``, ``checkpoint``, ``evaluation``, ``report``); this
object decides who hears it. Rank 0 alone writes (every rank computes the same numbers). New
outputs (an MLPerf log, a curves picture) are one more method body here, not more lines in the loop.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import atomic

REPORT = "train_report.json"


class Events:
    def __init__(self, rt, model_dir: Path):
        self.rt = rt
        self.model_dir = Path(model_dir)
        self.writer = None
        if rt.rank == 0:
            self.writer = rt.tf.summary.create_file_writer(str(self.model_dir / "train"))

    def log(self, message: str) -> None:
        self.rt.log(message)

    def step(self, step: int, train_steps: int, epoch: float, loss: float, lr: float,
             images_per_second: float | None) -> None:
        rate = f"{images_per_second:,.1f} images/s" if images_per_second is not None else "(first step)"
        self.log(f"step {step}/{train_steps} epoch {epoch:.2f} loss {loss:.4f} lr {lr:.5g} {rate}")
        if self.writer:
            tf = self.rt.tf
            with self.writer.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("learning_rate", lr)
                if images_per_second is not None:
                    tf.summary.scalar("images_per_second", images_per_second)

    def checkpoint(self, path: Path) -> None:
        self.log(f"checkpoint {path}")

    def evaluation(self, result: dict) -> None:
        from .evaluate import seed_line

        self.log(seed_line(result))
        if self.writer:
            with self.writer.as_default(step=result["global_step"]):
                self.rt.tf.summary.scalar("eval_top1", result["top1"])

    def report(self, report: dict, write) -> None:
        """Rank 0 writes ``train_report.json`` (through ``write``, which explains a full disk)."""
        if self.rt.rank != 0:
            return
        write(self.model_dir / REPORT, lambda p: atomic.write_json(p, report))
        ips = report["images_per_second"]
        self.log(f"trained {report['steps_this_run']} steps in {report['ttt_seconds']:.1f} s "
                 f"(time-to-train); " + (f"{ips:,.1f} images/s global" if ips else "too few steps to time"))


class StepMeter:
    """Throughput over log windows; the first step (graph tracing) is never timed."""

    def __init__(self, start_step: int, global_batch: int):
        self.global_batch = global_batch
        self.t_start = time.perf_counter()
        self.t_first = None  # end of the first step
        self.t_window, self.window_start = self.t_start, start_step

    def first_step_done(self, step: int) -> None:
        self.t_first = self.t_window = time.perf_counter()
        self.window_start = step

    def window(self, step: int) -> float | None:
        """Images/s since the last window (None when the window holds only the first step)."""
        now = time.perf_counter()
        ips = None
        if step > self.window_start:
            ips = (step - self.window_start) * self.global_batch / max(1e-9, now - self.t_window)
        self.t_window, self.window_start = now, step
        return ips

    def totals(self, steps_done: int) -> tuple[float, float | None]:
        """(seconds since the run started, images/s over every step after the first)."""
        t_end = time.perf_counter()
        timed = steps_done - 1
        ips = (timed * self.global_batch / (t_end - self.t_first)
               if timed > 0 and self.t_first else None)
        return t_end - self.t_start, ips
