"""``hvdtrain train``: Horovod data-parallel training, top to bottom: set up, loop, finish.

``prepare``: the data (``manifest``, shard checks), the world (``runtime``: hvd.init), the plan
(``config.make_plan``: the global batch split over the ranks, the LR scaled), the model and
optimizer, and the same start on every rank (rank 0 restores, then ``hvd.broadcast_variables``).
``loop``: one step after another (``engine.step``: DistributedGradientTape), while the parts that
decide when to act own their cadence: ``StepLogger``, ``Checkpointer`` (every K steps or minutes),
``Evaluator``, ``Target``, ``BadSteps``, and a stop signal the ranks agree on inside the step.
``finish``: the last checkpoint, the ``TrainReport``, the final evaluation. Rank 0 alone writes,
and records each attempt's start and end (``reporting.attempts``: what a stop or a fault cost).
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from hvdtrain import __version__, atomic, flags
from hvdtrain.cluster import faults, runtime, stop_signals
from hvdtrain.cluster.netbeat import NetBeat
from hvdtrain.cluster.stop_signals import EX_TEMPFAIL, StopSignals
from hvdtrain.cluster.watchdog import Watchdog, read_all_heartbeats
from hvdtrain.data import integrity, manifest
from hvdtrain.errors import HvdtrainError
from hvdtrain.reporting import attempts
from hvdtrain.reporting.events import Events, History, StepLogger, StepMeter
from hvdtrain.reporting.results import EvalResult, TargetOutcome, TrainReport
from hvdtrain.run_dir import RunDir
from hvdtrain.training import checkpoint, evaluate
from hvdtrain.training.checkpoint import Checkpointer
from hvdtrain.training.config import TrainConfig, make_plan
from hvdtrain.training.evaluate import Evaluator


class TrainingError(HvdtrainError, RuntimeError):
    pass


class Interrupted(HvdtrainError):
    """A stop signal ended the run early, after a checkpoint: run again to continue."""

    exit_code = EX_TEMPFAIL


def run_training(cfg: TrainConfig) -> TrainReport:
    """Set up, loop, finish. The loop's parts decide their own cadence: the logger, the
    checkpointer and the evaluator (``StepLogger``, ``Checkpointer``, ``Evaluator``)."""
    stop = StopSignals().install()  # first: a batch system's warning may come while TF starts
    run = prepare(cfg, stop)
    plan = run.plan
    logger = StepLogger(run.events, run.meter, cfg.log_every_steps, plan.train_steps,
                        plan.steps_per_epoch, run.optim.lr_at)
    checkpointer = Checkpointer(run.state.save, run.events.checkpoint, cfg.checkpoint_every_steps,
                                plan.train_steps, run.watchdog.paused, cfg.checkpoint_every_minutes * 60)
    evaluator = _evaluator(run)
    last = loop(run, logger, checkpointer, evaluator)
    return finish(run, last, logger.xent, checkpointer, evaluator)


def loop(run: Run, logger: StepLogger, checkpointer: Checkpointer, evaluator: Evaluator) -> int:
    """Steps from the resumed one to the plan's last; returns the last step run (earlier when an
    evaluation reaches --target-accuracy, or a stop signal came: ``run.stopped_by``)."""
    rt, plan, last = run.rt, run.plan, run.plan.train_steps
    for step in range(run.start_step + 1, plan.train_steps + 1):
        run.fault.maybe_stall(rt.rank, step)
        images, labels = next(run.batches)
        requests = [run.stop.signum, int(checkpointer.time_due())]  # this rank's, as the step starts
        with run.watchdog.step(step):
            xent, applied, (signum, time_due) = run.train_step(images, labels, requests)  # agreed
        run.bad.check(rt, bool(applied), step, xent, run.optim.lr_at(step))
        logger.after_step(step, xent)
        checkpointer.after_step(step, by_time=bool(time_due))
        if signum:
            run.stopped_by, last = stop_signals.name(signum), step
            break
        if evaluator.due(step):
            with run.watchdog.paused(), run.meter.paused():
                res = evaluator.evaluate(step)
            if run.target.reached_by(res.top1, step, run.events.seconds()):
                rt.log(f"target top-1 {run.target.accuracy} reached at step {step} "
                       f"(epoch {step / plan.steps_per_epoch:.2f}): stopping")
                last = step
                break
    run.watchdog.stop()  # only on the way out that worked: a failed rank's heartbeat stays
    return last


@dataclass
class Run:
    """Everything ``prepare`` sets up, for the loop and ``finish``."""

    cfg: TrainConfig
    rt: object
    plan: object
    data: manifest.Manifest
    net: object
    optim: object
    state: RunState
    start_step: int
    checksums_at_start: list
    events: Events
    mlperf: object
    fault: object
    batches: object
    train_step: object
    watchdog: Watchdog
    meter: StepMeter
    bad: BadSteps
    target: Target
    stop: StopSignals
    attempt: dict | None  # this attempt's line in attempts.jsonl (rank 0)
    stopped_by: str | None = None


def prepare(cfg: TrainConfig, stop: StopSignals) -> Run:
    """Data, world and plan; then the model and the same start on every rank (Horovod: init,
    scale, wrap, broadcast; rank 0 alone restores and writes). A stop signal noted meanwhile is
    acted on at the first step boundary."""
    cfg.check()
    data = manifest.load(cfg.data.data_dir, cfg.data.manifest)
    if data.train.num_images == 0:
        raise manifest.DataError(f"{cfg.data_dir} holds no training images")
    fingerprint = data.fingerprint()  # of the data set as prepared, for resume checks
    rt = runtime.start(cfg.threads, cfg.net.precision, cfg.faults.stall_timeout)  # hvd.init()
    data = _usable_data(rt, data, cfg)
    plan = make_plan(cfg.schedule, data.train.num_images, rt.size, cfg.optim)  # recipe, batch split
    for line in (rt.describe_world(), plan.describe(), rt.threads.describe(), rt.onednn, rt.comm):
        rt.log(line)
    beats = []  # the previous attempt's heartbeats: where it got to, should it have died
    if rt.rank == 0:
        beats = _prepare_model_dir(rt, cfg.model_dir)
        _write_run_config(cfg, plan, rt.size)
    _check_model_dir_is_shared(rt, cfg.model_dir)
    mlperf = _mlperf_log(rt, cfg, plan, data)  # init_start: before the model is built

    from hvdtrain.engine.model import build_resnet
    from hvdtrain.engine.optim import make_optimizer
    from hvdtrain.engine.step import make_train_step

    rt.tf.keras.utils.set_random_seed(cfg.seed)  # initial weights (rank 0's are broadcast) are seeded
    net = build_resnet(cfg.net.model, data.num_classes, cfg.net.image_size, cfg.net.bn_decay)
    optim = make_optimizer(plan, net)  # the LR scaled to the global batch; the tape is wrapped in step
    state = RunState(rt, cfg, net, optim, fingerprint, data.class_names(), plan)
    if rt.rank == 0:
        state.restore()
    rt.hvd.broadcast_variables(net.variables + optim.variables, root_rank=0)
    checksums = _rank_checksums(rt, net.variables + optim.variables)
    start = int(optim.optimizer.iterations.numpy())
    if start >= plan.train_steps:
        rt.log(f"model dir {cfg.model_dir} is already at step {start} of {plan.train_steps}; nothing to do")
    attempt = _begin_attempt(rt, cfg.model_dir, start, beats) if rt.rank == 0 else None
    events = Events(rt, cfg.model_dir, start, _curve_info(cfg, plan), mlperf)
    fault = faults.from_env(resumed=start > 0)
    train_step = _with_requests(rt, make_train_step(rt, net, optim, plan.label_smoothing,
                                                    inject_nan_at=fault.nan_at_step,
                                                    compression=cfg.gradient_compression))
    watchdog = Watchdog(cfg.faults.stall_timeout, rt.rank, rt.size, RunDir(cfg.model_dir).heartbeats,
                        netbeat=NetBeat.start(rt) if cfg.faults.stall_timeout > 0 else None)
    if mlperf:
        mlperf.run_start(int(start / plan.steps_per_epoch) + 1,
                         cfg.eval_every_epochs or plan.epochs - start / plan.steps_per_epoch)
    return Run(cfg, rt, plan, data, net, optim, state, start, checksums, events, mlperf, fault,
               _batches(rt, data, cfg, plan, start), train_step, watchdog,
               StepMeter(start, plan.global_batch), BadSteps(cfg.max_bad_steps, cfg.model_dir),
               Target(cfg.target_accuracy, plan), stop, attempt)


def _with_requests(rt, step):
    """The compiled step taking and returning the ranks' requests as plain integers: each rank's
    [stop signal, checkpoint due by time] in, their maximum over all ranks out (``engine.step``),
    so every rank takes the same decision at the same step boundary."""
    def train_step(images, labels, requests: list[int]):
        xent, applied, agreed = step(images, labels, rt.tf.constant(requests, rt.tf.int32))
        return xent, applied, [int(v) for v in agreed.numpy()]
    return train_step


def _evaluator(run: Run) -> Evaluator:
    """Mid-run evaluations average the ranks' BN statistics first; the final one (after the last
    checkpoint, which averaged them) writes eval_results.json."""
    cfg, plan = run.cfg, run.plan

    def score(step: int, final: bool) -> EvalResult:
        if not final:
            run.state.sync_bn_statistics()
        res = evaluate.score(run.rt, run.net, run.data, cfg.eval_batch_size, cfg.net.image_size,
                             cfg.net.centre_crop_padding)
        if final:
            res = replace(res, global_step=step, checkpoint=str(checkpoint.path_for(cfg.model_dir, step)))
            if run.rt.rank == 0:
                _write_or_explain(RunDir(cfg.model_dir).eval_results,
                                  lambda p: evaluate.write_results(cfg.model_dir, res))
        return res

    every = max(1, round(cfg.eval_every_epochs * plan.steps_per_epoch)) if cfg.eval_every_epochs else None
    return Evaluator(score, run.events.evaluation, every, plan.train_steps, plan.steps_per_epoch,
                     cfg.eval_every_epochs, wanted_at_end=bool(cfg.eval_at_end or cfg.target_accuracy))


def finish(run: Run, last: int, xent: float, checkpointer: Checkpointer,
           evaluator: Evaluator) -> TrainReport:
    """The last checkpoint, the report, the final evaluation, the MLPerf run_stop."""
    rt, cfg, plan, target = run.rt, run.cfg, run.plan, run.target
    seconds, images_per_second = run.meter.totals(last - run.start_step)
    saved = checkpointer.final(last)  # averages the BN statistics first
    report = TrainReport(
        ttt_seconds=round(seconds, 3),
        images_per_second=round(images_per_second, 2) if images_per_second else None,
        global_batch_size=plan.global_batch, num_ranks=rt.size, recipe=plan.recipe,
        train_steps=plan.train_steps, steps_this_run=last - run.start_step, last_step=last,
        start_step=run.start_step, epochs=round(plan.epochs, 3), final_loss=xent,
        precision=cfg.net.precision, skipped_steps=run.bad.count, model=cfg.net.model,
        image_size=cfg.net.image_size, plan=plan.as_dict(), threads=vars(rt.threads),
        rank_weight_checksums={"after_broadcast": run.checksums_at_start,
                               "at_end": _rank_checksums(rt, run.net.variables + run.optim.variables),
                               # the weights alone: what a resume must reproduce bit for bit
                               "trainable_at_end": _rank_checksums(rt, run.net.trainable_variables)},
        checkpoint_seconds=round(checkpointer.seconds, 3),
        checkpoint_share=round(checkpointer.seconds / seconds, 4) if seconds else 0.0,
        stopped_by=run.stopped_by)
    step_seconds = plan.global_batch / images_per_second if images_per_second else None
    report.attempts = _end_attempt(run, last, step_seconds)
    target.fill(report, run.events.history)
    run.events.report(report, _write_or_explain)
    rt.log(f"checkpoints: {checkpointer.saves} in {checkpointer.seconds:.1f} s, "
           f"{report.checkpoint_share:.1%} of the training time")
    if run.stopped_by:
        raise Interrupted(f"stopped by {run.stopped_by} at step {last} of {plan.train_steps}: "
                          f"{'checkpoint ' + str(saved) if saved else 'rank 0 saved a checkpoint'}; "
                          f"run the same command again to continue (exit status {EX_TEMPFAIL})")
    if evaluator.due_at_end(last) and target.step != last:
        report.eval = evaluator.evaluate(last, final=True)
        target.reached_by(report.eval.top1, last, run.events.seconds())
        target.fill(report, run.events.history)
        run.events.report(report, _write_or_explain, quiet=True)  # now with the final evaluation
    if run.mlperf:
        run.mlperf.run_stop(target.step is not None or cfg.target_accuracy is None)
    return report


# ------------------------------------------------------------------------------- the pieces
class Target:
    """``--target-accuracy``: the first evaluation at or above it ends the run (MLPerf's
    time-to-train: from the run's start to that evaluation, earlier runs of a resume included)."""

    def __init__(self, accuracy: float | None, plan):
        self.accuracy, self.plan = accuracy, plan
        self.step = self.seconds = None

    def reached_by(self, top1: float, step: int, seconds: float) -> bool:
        if self.accuracy is None or self.step is not None or top1 < self.accuracy:
            return False
        self.step, self.seconds = step, seconds
        return True

    def fill(self, report: TrainReport, history) -> None:
        """The report's evaluations, best top-1 and (with a target) the outcome."""
        evals = history.evals
        report.evaluations = evals
        report.best_top1 = max(e["top1"] for e in evals) if evals else None
        if self.accuracy is not None:
            hit = self.step is not None
            report.target = TargetOutcome(
                self.accuracy, hit, self.step,
                round(self.step / self.plan.steps_per_epoch, 3) if hit else None,
                round(self.seconds, 3) if hit else None)


def _begin_attempt(rt, model_dir: Path, start: int, beats: list[dict]) -> dict:
    """Rank 0: this attempt's line in attempts.jsonl, with the time the previous one cost."""
    steps = History.load(model_dir).steps  # the previous attempt's, before this one overwrites them
    timed = [e for e in steps if e.get("images_per_second")]
    per_step = None
    if len(timed) >= 2:
        a, b = timed[-2], timed[-1]
        per_step = (b["seconds"] - a["seconds"]) / max(1, b["step"] - a["step"])
    record = attempts.begin(model_dir, rt.hosts, rt.size, start, beats, per_step)
    if record["attempt"] > 1:
        left = f", without {', '.join(record['hosts_left_out'])}" if record["hosts_left_out"] else ""
        rt.log(f"attempt {record['attempt']} (the last one {record['previous_ended']} at step "
               f"{record['previous_last_step']}): resumed at step {start}{left}; lost "
               f"{record['redone_seconds']:.0f} s of work redone and "
               f"{record['restart_seconds']:.0f} s restarting")
    return record


def _end_attempt(run: Run, last: int, step_seconds: float | None) -> dict | None:
    """Rank 0: how this attempt ended, and the run's attempts so far for the report."""
    if run.attempt is None:
        return None
    first = (run.meter.t_first - run.meter.t_start) if run.meter.t_first else 0.0  # tracing, warm-up
    how = f"stopped by {run.stopped_by}" if run.stopped_by else "finished"
    attempts.end(run.cfg.model_dir, run.attempt["attempt"], last, how, max(0.0, first), step_seconds)
    return attempts.summary(run.cfg.model_dir)


def _mlperf_log(rt, cfg: TrainConfig, plan, data):
    """Rank 0's MLPerf log (``mlperf_log``); None elsewhere."""
    if rt.rank != 0:
        return None
    from hvdtrain.reporting.mlperf_log import MLPerfLog

    return MLPerfLog(cfg.model_dir, plan, data.validation.num_images,
                     f"{rt.size} rank(s) on {len(set(rt.hosts))} host(s)")


def _curve_info(cfg: TrainConfig, plan) -> dict:
    return {"title": f"{cfg.net.model} @ {cfg.net.image_size}px, recipe {plan.recipe} "
                     f"({plan.optimizer}, {plan.lr_schedule})",
            "subtitle": f"global batch {plan.global_batch:,} on {plan.num_ranks} rank(s)",
            "target_accuracy": cfg.target_accuracy}


class RunState:
    """What a run saves and restores: weights, optimizer slots and step (hence LR and data
    position), with the data set's fingerprint and the model's identity. Rank 0 alone reads and
    writes; the broadcast after ``restore`` gives every rank the same state."""

    def __init__(self, rt, cfg: TrainConfig, net, optim, fingerprint: str, classes: list[str], plan):
        self.rt, self.cfg, self.net = rt, cfg, net
        self.ckpt = rt.tf.train.Checkpoint(model=net, optimizer=optim.optimizer)
        self.fingerprint = fingerprint
        self.meta = {"model": vars(cfg.net), "num_classes": len(classes), "classes": classes,
                     "data": fingerprint, "global_batch": plan.global_batch, "num_ranks": rt.size,
                     "flags": flags.values(cfg), "plan": plan.as_dict()}  # how the run was made

    def restore(self) -> None:
        found = checkpoint.latest(self.cfg.model_dir)
        if not found:
            return
        path, meta = found
        if meta.get("data") != self.fingerprint:
            raise manifest.DataError(
                f"{path} was trained on another data set (fingerprint {meta.get('data')}, "
                f"{self.cfg.data_dir} has {self.fingerprint}: different shards, classes or labels); "
                f"use a new --model-dir or the original data")
        if meta.get("model", {}).get("model") != self.cfg.net.model:
            raise TrainingError(f"{path} holds a {meta['model'].get('model')}, "
                                f"not --model {self.cfg.net.model}")
        self.ckpt.read(checkpoint.tf_prefix(path)).assert_existing_objects_matched()
        self.rt.log(f"resumed from {path} (step {meta['step']}, saved by {meta.get('num_ranks')} rank(s))")
        before = meta.get("flags")  # checkpoints of earlier versions have none
        if before and (changed := flags.difference(before, self.meta["flags"])):
            self.rt.log(f"resumed with changed settings: {'; '.join(changed)}")

    def sync_bn_statistics(self) -> None:
        """BN moving mean/variance are updated from each rank's own batches; average them so the
        checkpoint and the evaluation use statistics of all the data and all ranks are identical."""
        hvd, net = self.rt.hvd, self.net
        if self.rt.size > 1 and net.non_trainable_variables:
            averaged = hvd.grouped_allreduce(net.non_trainable_variables, op=hvd.Average)
            for var, value in zip(net.non_trainable_variables, averaged, strict=True):
                var.assign(value)

    def save(self, step: int) -> Path | None:
        """Every rank averages BN statistics; rank 0 writes. Returns the path on rank 0."""
        self.sync_bn_statistics()
        if self.rt.rank != 0:
            return None
        return _write_or_explain(checkpoint.path_for(self.cfg.model_dir, step), lambda _: checkpoint.save(
            self.cfg.model_dir, step, self.ckpt, self.meta, keep=self.cfg.keep_checkpoints))


class BadSteps:
    """The NaN policy: a non-finite step was not applied (``step``); stop, or skip a few."""

    def __init__(self, limit: int, model_dir: Path):
        self.limit, self.model_dir, self.count = limit, model_dir, 0

    def check(self, rt, applied: bool, step: int, xent, lr: float) -> None:
        if applied:
            return
        self.count += 1
        msg = f"loss or gradients not finite at step {step} (loss {float(xent)}, LR {lr:.5g})"
        if self.count > self.limit:
            last = checkpoint.latest(self.model_dir) if rt.rank == 0 else None
            raise TrainingError(f"{msg}; stopping. The last good checkpoint "
                                f"{last[0] if last else '(none yet)'} is intact.")
        rt.log(f"WARNING: {msg}; update skipped ({self.count} of at most {self.limit})")


def _usable_data(rt, data: manifest.Manifest, cfg: TrainConfig) -> manifest.Manifest:
    """Every rank hashes its share of the shards this run reads (``integrity``)."""
    data = integrity.usable_manifest(rt, data, "train", cfg.faults.skip_corrupt_shards)
    if cfg.eval_at_end or cfg.eval_every_epochs:
        data = integrity.usable_manifest(rt, data, "validation", cfg.faults.skip_corrupt_shards)
    return data


def _batches(rt, data, cfg: TrainConfig, plan, start_step: int):
    """This rank's training batches from ``start_step`` on; a bad record names its shard."""
    from hvdtrain.engine import input_pipeline

    ds = input_pipeline.train_dataset(data, rt.rank, rt.size, plan.per_rank_batch, cfg.net.image_size,
                                      seed=cfg.seed, min_area=cfg.min_crop_area,
                                      flip=cfg.random_flip, start_step=start_step,
                                      crop_padding=cfg.net.centre_crop_padding)
    try:
        yield from ds
    except rt.tf.errors.DataLossError as exc:
        raise integrity.corrupt_record(rt.rank, "train", cfg.data_dir, exc) from None


def _prepare_model_dir(rt, model_dir: Path) -> list[dict]:
    """Rank 0: the model dir must be writable before the first step, not at the first save.
    Returns the heartbeats an earlier attempt left (its last steps), before clearing them."""
    try:
        atomic.ensure_writable_dir(model_dir)
    except OSError as exc:
        raise TrainingError(f"--model-dir {model_dir} is not writable: {exc}") from None
    for p in checkpoint.remove_partial(model_dir):
        rt.log(f"removed unfinished checkpoint {p}")
    beats = read_all_heartbeats(RunDir(model_dir).heartbeats)
    # Of an earlier run. Ranks write theirs only after the broadcast that follows this, so none is lost.
    shutil.rmtree(RunDir(model_dir).heartbeats, ignore_errors=True)
    return beats


def _write_run_config(cfg: TrainConfig, plan, num_ranks: int) -> None:
    """Rank 0: how this run was made (every flag, the ones set, the plan), for `hvdtrain report`."""
    made = {"command": "train", "hvdtrain": __version__, "num_ranks": num_ranks,
            "changed": flags.changed(cfg), "flags": flags.values(cfg), "plan": plan.as_dict()}
    target = RunDir(cfg.model_dir).run_config
    _write_or_explain(target, lambda p: atomic.write_json(p, made))


def _check_model_dir_is_shared(rt, model_dir: Path) -> None:
    """Every rank must see rank 0's model dir (checkpoints, heartbeats): on a cluster, a shared
    file system. Rank 0 leaves a token there; a rank that cannot read it names its host."""
    if rt.size == 1:
        return
    token = rt.hvd.broadcast_object(f"{os.getpid()}-{time.time_ns()}" if rt.rank == 0 else None,
                                    root_rank=0)
    path = RunDir(model_dir).shared_token
    if rt.rank == 0:
        atomic.write_bytes(path, token.encode())
    rt.hvd.allgather_object(rt.rank)  # a barrier: the token is written before anyone reads it
    try:
        seen = path.read_text() == token
    except OSError:
        seen = False
    blind = [(r, rt.hosts[r]) for r, ok in enumerate(rt.hvd.allgather_object(seen)) if not ok]
    if blind:
        where = ", ".join(f"rank {r} on {h}" for r, h in blind)
        raise TrainingError(f"--model-dir {model_dir} is not visible from {where}: every rank must "
                            f"see rank 0's model dir (put it on a file system all nodes share)")


def _write_or_explain(target: Path, write):
    """Run a write; a full disk or a read-only model dir becomes one clear error."""
    import tensorflow as tf

    try:
        return write(target)
    except (OSError, tf.errors.OpError) as exc:
        raise TrainingError(atomic.write_failure(target, exc, "model dir")
                            + "; the previous checkpoint is intact") from None


def _rank_checksums(rt, variables) -> list[float]:
    """One number per rank summarising all weights; ranks that diverged are an error."""
    tf = rt.tf
    local = tf.add_n([tf.reduce_sum(tf.cast(v, tf.float64) * (1.0 + tf.cast(v, tf.float64)))
                      for v in variables])
    sums = [float(x) for x in rt.hvd.allgather(tf.reshape(local, [1]), name="weight_checksums").numpy()]
    if any(x != sums[0] for x in sums):
        raise TrainingError(f"ranks hold different weights (checksums {sums})")
    return sums
