"""The run's events, and where they go: one sink for the log, TensorBoard and the report.

The training loop says what happened (``step``, ``checkpoint``, ``evaluation``, ``report``); this
object decides who hears it: the log, TensorBoard, ``history.json`` (saved with each checkpoint,
so a resumed run continues its curves and evaluation history), ``curves.png`` (``curves``) and
``mlperf.log`` (``mlperf_log``). Rank 0 alone writes (every rank computes the same numbers).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.reporting.results import EvalResult, TrainReport
from hvdtrain.run_dir import RunDir

DRAW_EVERY_SECONDS = 30.0


@dataclass
class History:
    """Loss, LR and images/s at each log step and every evaluation, against epochs; ``seconds``
    count training time from the first run's start, across resumes."""

    steps: list = field(default_factory=list)   # {step, epoch, loss, lr, images_per_second, seconds}
    evals: list = field(default_factory=list)   # {step, epoch, top1, top5, seconds}
    info: dict = field(default_factory=dict)    # recipe, model, batch: the picture's title

    @classmethod
    def load(cls, model_dir: Path, upto_step: int | None = None) -> History:
        """The saved history, cut at ``upto_step`` (the checkpoint a resumed run starts from)."""
        try:
            raw = json.loads((RunDir(model_dir).history).read_text())
        except (OSError, ValueError):
            return cls()
        keep = (lambda e: e["step"] <= upto_step) if upto_step is not None else (lambda e: True)
        return cls([e for e in raw.get("steps", []) if keep(e)],
                   [e for e in raw.get("evals", []) if keep(e)], raw.get("info", {}))

    def seconds_so_far(self) -> float:
        return max([e["seconds"] for e in self.steps + self.evals], default=0.0)


class Events:
    def __init__(self, rt, model_dir: Path, start_step: int = 0, info: dict | None = None,
                 mlperf=None):
        self.rt = rt
        self.model_dir = Path(model_dir)
        self.run_dir = RunDir(self.model_dir)
        self.writer = None
        self.mlperf = mlperf  # an mlperf_log.MLPerfLog on rank 0, else None
        self.history = History.load(self.model_dir, start_step) if rt.rank == 0 else History()
        self.history.info.update(info or {})
        self.t0 = time.perf_counter() - self.history.seconds_so_far()
        self._drawn = float("-inf")
        if rt.rank == 0:
            self.writer = rt.tf.summary.create_file_writer(str(self.run_dir.tensorboard))

    def seconds(self) -> float:
        """Training seconds since the first run started (earlier runs included)."""
        return time.perf_counter() - self.t0

    def log(self, message: str) -> None:
        self.rt.log(message)

    def step(self, step: int, train_steps: int, epoch: float, loss: float, lr: float,
             images_per_second: float | None) -> None:
        rate = f"{images_per_second:,.1f} images/s" if images_per_second is not None else "(first step)"
        self.log(f"step {step}/{train_steps} epoch {epoch:.2f} loss {loss:.4f} lr {lr:.5g} {rate}")
        self.history.steps.append({"step": step, "epoch": round(epoch, 4), "loss": loss, "lr": lr,
                                   "images_per_second": images_per_second,
                                   "seconds": round(self.seconds(), 3)})
        if self.writer:
            tf = self.rt.tf
            with self.writer.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("learning_rate", lr)
                if images_per_second is not None:
                    tf.summary.scalar("images_per_second", images_per_second)

    def checkpoint(self, path: Path) -> None:
        self.log(f"checkpoint {path}")
        self.save_history(final=False)

    def save_history(self, final: bool = True) -> None:
        """history.json and curves.png, rewritten (rank 0); a failure to draw never stops a run.
        The picture is redrawn at most every DRAW_EVERY_SECONDS at checkpoints (a checkpoint every
        few seconds, as in the fault tests, would spend its time drawing) and always at the end."""
        if self.rt.rank != 0:
            return
        from hvdtrain.reporting import curves

        try:
            atomic.write_json(self.run_dir.history, asdict(self.history))
            if final or time.perf_counter() - self._drawn >= DRAW_EVERY_SECONDS:
                curves.draw(self.history, self.run_dir.curves)
                self._drawn = time.perf_counter()
        except (OSError, RuntimeError, ValueError) as exc:
            self.log(f"WARNING: could not write {self.run_dir.history} or curves.png: {exc}")

    def evaluation(self, result: EvalResult, epoch: float, next_block_epochs: float | None = None) -> None:
        self.log(result.result_line())
        self.history.evals.append({"step": result.global_step, "epoch": round(epoch, 4),
                                   "top1": result.top1, "top5": result.top5,
                                   "seconds": round(self.seconds(), 3)})
        if self.mlperf:
            self.mlperf.evaluation(max(1, round(epoch)), result.top1, next_block_epochs)
        if self.writer:
            with self.writer.as_default(step=result.global_step):
                self.rt.tf.summary.scalar("eval_top1", result.top1)

    def report(self, report: TrainReport, write, quiet: bool = False) -> None:
        """Rank 0 writes ``train_report.json`` (through ``write``, which explains a full disk)."""
        if self.rt.rank != 0:
            return
        write(self.run_dir.report, lambda p: atomic.write_json(p, report.to_json()))
        self.save_history()
        if quiet:
            return
        ips = report.images_per_second
        self.log(f"trained {report.steps_this_run} steps in {report.ttt_seconds:.1f} s "
                 f"(time-to-train); " + (f"{ips:,.1f} images/s global" if ips else "too few steps to time"))


class StepLogger:
    """The log cadence: a line every ``every`` steps and at the last step. It also keeps the
    latest loss it read (the first step's, then each logged one), for the run's report; reading
    a loss waits for the step, so it is read only when logged."""

    def __init__(self, events, meter, every: int, last_step: int, steps_per_epoch: float, lr_at):
        self.events, self.meter, self.every, self.last_step = events, meter, every, last_step
        self.steps_per_epoch, self.lr_at = steps_per_epoch, lr_at
        self.xent = float("nan")

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.last_step

    def after_step(self, step: int, xent) -> None:
        if self.meter.t_first is None:
            self.xent = float(xent)
            self.meter.first_step_done(step)
        if self.due(step):
            self.xent = float(xent)
            self.events.step(step, self.last_step, step / self.steps_per_epoch, self.xent,
                             self.lr_at(step), self.meter.window(step))


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

    @contextmanager
    def paused(self):
        """Leave the enclosed time (an evaluation) out of images/s; time-to-train keeps it."""
        t = time.perf_counter()
        try:
            yield
        finally:
            gap = time.perf_counter() - t
            self.t_window += gap
            if self.t_first is not None:
                self.t_first += gap

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
