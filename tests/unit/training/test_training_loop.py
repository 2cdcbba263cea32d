"""The training loop's cadence and stop policies, driven by a fake step: which steps log,
checkpoint and evaluate, when a target ends the run, when bad steps stop it. No TensorFlow; each
test runs in milliseconds."""

from __future__ import annotations

import contextlib
import signal
from types import SimpleNamespace

import pytest

from hvdtrain.cluster.stop_signals import StopSignals
from hvdtrain.reporting.events import StepLogger, StepMeter
from hvdtrain.reporting.results import EvalResult
from hvdtrain.training.checkpoint import Checkpointer
from hvdtrain.training.evaluate import Evaluator
from hvdtrain.training.train import BadSteps, Target, TrainingError, loop


class FakeEvents:
    def __init__(self):
        self.logged, self.checkpoints, self.evals, self.lines = [], [], [], []

    def step(self, step, train_steps, epoch, loss, lr, ips):
        self.logged.append(step)

    def checkpoint(self, path):
        self.checkpoints.append(path)

    def evaluation(self, res, epoch, next_block=None):
        self.evals.append((res.global_step, next_block))

    def seconds(self):
        return 1.0


def _run(tmp_path, steps=12, start=0, every=(5, 4, 6), top1=None, target=None, bad_at=(),
         max_bad=0, rank=0, signal_at=None, clock=None):
    """A Run with a fake step (loss = step; not applied at ``bad_at``) and the real components."""
    plan = SimpleNamespace(train_steps=steps, steps_per_epoch=4.0, global_batch=8)
    events, taken, lines = FakeEvents(), [], []
    rt = SimpleNamespace(rank=rank, size=1, log=lines.append)
    paused = contextlib.nullcontext

    stop = StopSignals()

    def train_step(images, labels, requests):
        taken.append(images)
        if images == signal_at:
            stop._note(signal.SIGUSR1, None)  # as the handler would, mid-step
        return float(images), images not in bad_at, requests  # one rank: its requests are agreed

    run = SimpleNamespace(
        rt=rt, plan=plan, start_step=start, events=events,
        fault=SimpleNamespace(maybe_stall=lambda r, s: None),
        batches=((i, i) for i in range(start + 1, steps + 1)),
        watchdog=SimpleNamespace(step=lambda s: paused(), paused=paused, stop=lambda: lines.append("stop")),
        train_step=train_step, optim=SimpleNamespace(lr_at=lambda s: 0.1), meter=StepMeter(start, 8),
        bad=BadSteps(max_bad, tmp_path), target=Target(target, plan), stop=stop, stopped_by=None)
    log_every, ckpt_every, eval_every = every
    logger = StepLogger(events, run.meter, log_every, steps, plan.steps_per_epoch, run.optim.lr_at)
    checkpointer = Checkpointer(lambda s: f"ckpt-{s}" if rank == 0 else None, events.checkpoint,
                                ckpt_every, steps, paused, every_seconds=60 if clock else None,
                                clock=clock or (lambda: 0.0))
    scores = top1 or {}
    evaluator = Evaluator(lambda s, final: EvalResult(scores.get(s, 0.1), 1.0, 0.5, 10, 0.1, 100.0),
                          events.evaluation,
                          eval_every, steps, plan.steps_per_epoch, every_epochs=1.5)
    return run, logger, checkpointer, evaluator, taken, lines


def test_each_component_keeps_its_own_cadence(tmp_path):
    run, logger, ckpt, ev, taken, lines = _run(tmp_path)
    assert loop(run, logger, ckpt, ev) == 12
    assert taken == list(range(1, 13))
    assert run.events.logged == [5, 10, 12]            # every 5, and the last step
    assert run.events.checkpoints == ["ckpt-4", "ckpt-8"]  # the last is finish()'s to save
    assert run.events.evals == [(6, 1.5)]              # mid-run only; 12 is the end's
    assert logger.xent == 12.0 and lines == ["stop"]
    ckpt.final(12)
    assert run.events.checkpoints[-1] == "ckpt-12"
    assert ev.due_at_end(12)
    ev.evaluate(12, final=True)
    assert run.events.evals[-1] == (12, None) and not ev.due_at_end(12)


def test_a_resumed_run_keeps_the_cadence_of_absolute_steps(tmp_path):
    run, logger, ckpt, ev, taken, _ = _run(tmp_path, start=7)
    assert loop(run, logger, ckpt, ev) == 12
    assert taken == [8, 9, 10, 11, 12]
    assert (run.events.logged, run.events.checkpoints, run.events.evals) == ([10, 12], ["ckpt-8"], [])
    assert logger.xent == 12.0  # the first step's loss, then each logged one


def test_the_first_evaluation_over_the_target_stops_the_run(tmp_path):
    run, logger, ckpt, ev, taken, lines = _run(tmp_path, every=(5, 100, 2), top1={2: 0.5, 4: 0.8, 6: 0.9},
                                               target=0.75)
    assert loop(run, logger, ckpt, ev) == 4
    assert taken == [1, 2, 3, 4] and run.events.evals == [(2, 1.5), (4, 1.5)]
    assert run.target.step == 4 and any("reached at step 4 (epoch 1.00): stopping" in ln for ln in lines)
    assert not ev.due_at_end(4)  # step 4 was just evaluated


def test_bad_steps_are_skipped_up_to_the_bound_then_stop_the_run(tmp_path):
    run, logger, ckpt, ev, taken, lines = _run(tmp_path, bad_at=(3, 5), max_bad=1)
    with pytest.raises(TrainingError, match=r"not finite at step 5 .*stopping. The last good checkpoint"):
        loop(run, logger, ckpt, ev)
    assert taken == [1, 2, 3, 4, 5] and run.bad.count == 2
    assert any("step 3" in ln and "update skipped (1 of at most 1)" in ln for ln in lines)
    assert "stop" not in lines  # a failed run leaves its heartbeat for the other ranks' watchdogs


def test_only_rank_0_records_a_checkpoint(tmp_path):
    run, logger, ckpt, ev, _, _ = _run(tmp_path, rank=1)
    loop(run, logger, ckpt, ev)
    ckpt.final(12)
    assert run.events.checkpoints == []


def test_cadence_without_evaluations():
    ev = Evaluator(lambda s, f: None, lambda *a: None, None, 10, 2.0, wanted_at_end=False)
    assert not any(ev.due(s) for s in range(1, 11)) and not ev.due_at_end(10)
    ck = Checkpointer(lambda s: s, lambda p: None, 3, 9)
    assert [s for s in range(1, 10) if ck.due(s)] == [3, 6]


def test_a_stop_signal_ends_the_loop_after_the_next_step(tmp_path):
    """A signal during step 6 rides on step 7's allreduce (the ranks agree inside the step), so
    every rank stops after step 7, which is neither evaluated nor left unsaved."""
    run, logger, ckpt, ev, taken, lines = _run(tmp_path, signal_at=6, every=(5, 4, 7))
    assert loop(run, logger, ckpt, ev) == 7 and run.stopped_by == "SIGUSR1"
    assert taken == list(range(1, 8)) and run.events.evals == []  # step 7's evaluation is skipped
    assert lines == ["stop"]  # the watchdog ends cleanly: finish() saves step 7, then exit 75
    ckpt.final(7)
    assert run.events.checkpoints == ["ckpt-4", "ckpt-7"]


def test_checkpoints_come_on_time_too(tmp_path):
    """Every 60 s of a fake clock that gains 25 s at each reading (one a step, two a save), besides
    every 4 steps: time saves at steps 3, 7 and 11; never at the last step (finish() saves it)."""
    now = [0.0]

    def clock():
        now[0] += 25.0
        return now[0]

    run, logger, ckpt, ev, _, _ = _run(tmp_path, every=(5, 4, 100), clock=clock)
    loop(run, logger, ckpt, ev)
    assert run.events.checkpoints == ["ckpt-3", "ckpt-4", "ckpt-7", "ckpt-8", "ckpt-11"]
    assert ckpt.saves == 5 and ckpt.seconds == 5 * 25.0
