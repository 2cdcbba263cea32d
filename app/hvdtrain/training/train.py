"""``hvdtrain train``: the seed's recipe as Horovod data-parallel training, top to bottom.

``run_training`` reads in four headed phases; each delegates to one small piece:
data and world (``manifest``, ``runtime``: hvd.init, ``config.make_plan``: the global batch split
over the ranks, LR scaled), model and state (``model``, ``optim``, ``RunState``: rank 0 restores,
then ``hvd.broadcast_variables``), the loop (``step``: DistributedGradientTape; ``watchdog``;
``events``), and the end (report, evaluation). Rank 0 alone writes (``events``, ``RunState``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.cluster import faults, runtime
from hvdtrain.cluster.netbeat import NetBeat
from hvdtrain.cluster.watchdog import HEARTBEATS, Watchdog
from hvdtrain.data import integrity, manifest
from hvdtrain.errors import HvdtrainError
from hvdtrain.reporting.events import Events, StepMeter
from hvdtrain.training import checkpoint, evaluate
from hvdtrain.training.config import TrainConfig, make_plan


class TrainingError(HvdtrainError, RuntimeError):
    pass


def run_training(cfg: TrainConfig) -> dict:
    # ---- data, world and plan ------------------------------------------------------------------
    cfg.check()
    data = manifest.load(cfg.data.data_dir, cfg.data.manifest)
    if data.train.num_images == 0:
        raise manifest.DataError(f"{cfg.data_dir} holds no training images")
    fingerprint = data.fingerprint()  # of the data set as prepared, for resume checks
    rt = runtime.start(cfg.threads, cfg.net.precision, cfg.faults.stall_timeout)  # hvd.init()
    tf, hvd = rt.tf, rt.hvd
    data = _usable_data(rt, data, cfg)
    plan = make_plan(cfg.schedule, data.train.num_images, rt.size, cfg.optim)  # recipe, batch split
    rt.log(rt.describe_world())
    rt.log(plan.describe())
    rt.log(rt.threads.describe())
    rt.log(rt.onednn)
    rt.log(rt.comm)
    if rt.rank == 0:
        _prepare_model_dir(rt, cfg.model_dir)
    _check_model_dir_is_shared(rt, cfg.model_dir)
    mlperf = _mlperf_log(rt, cfg, plan, data)  # init_start: before the model is built

    # ---- model, optimizer, and the same start on every rank ------------------------------------
    from hvdtrain.engine.model import build_resnet
    from hvdtrain.engine.optim import make_optimizer
    from hvdtrain.engine.step import make_train_step

    tf.keras.utils.set_random_seed(cfg.seed)  # initial weights (rank 0's are broadcast) are seeded
    net = build_resnet(cfg.net.model, data.num_classes, cfg.net.image_size, cfg.net.bn_decay)
    optim = make_optimizer(plan, net)
    state = RunState(rt, cfg, net, optim, fingerprint, data.num_classes, plan.global_batch)
    if rt.rank == 0:
        state.restore()
    hvd.broadcast_variables(net.variables + optim.variables, root_rank=0)
    checksums_at_start = _rank_checksums(rt, net.variables + optim.variables)
    start_step = int(optim.optimizer.iterations.numpy())
    if start_step >= plan.train_steps:
        rt.log(f"model dir {cfg.model_dir} is already at step {start_step} of {plan.train_steps}; "
               f"nothing to do")
    events = Events(rt, cfg.model_dir, start_step, _curve_info(cfg, plan), mlperf)

    # ---- the loop ------------------------------------------------------------------------------
    fault = faults.from_env()
    batches = _batches(rt, data, cfg, plan, start_step)  # resumes mid-epoch where the run left off
    train_step = make_train_step(rt, net, optim, plan.label_smoothing, inject_nan_at=fault.nan_at_step,
                                 compression=cfg.gradient_compression)
    eval_every = (max(1, round(cfg.eval_every_epochs * plan.steps_per_epoch))
                  if cfg.eval_every_epochs else None)
    watchdog = Watchdog(cfg.faults.stall_timeout, rt.rank, rt.size, cfg.model_dir / HEARTBEATS,
                        netbeat=NetBeat.start(rt) if cfg.faults.stall_timeout > 0 else None)
    meter, bad = StepMeter(start_step, plan.global_batch), BadSteps(cfg.max_bad_steps, cfg.model_dir)
    target = Target(cfg.target_accuracy, plan)
    if mlperf:
        mlperf.run_start(int(start_step / plan.steps_per_epoch) + 1,
                         cfg.eval_every_epochs or plan.epochs - start_step / plan.steps_per_epoch)
    xent, last = float("nan"), plan.train_steps
    for step in range(start_step + 1, plan.train_steps + 1):
        fault.maybe_stall(rt.rank, step)
        images, labels = next(batches)
        with watchdog.step(step):
            xent_t, applied = train_step(images, labels)
        bad.check(rt, bool(applied), step, xent_t, optim.lr_at(step))
        if meter.t_first is None:
            xent = float(xent_t)
            meter.first_step_done(step)
        if step % cfg.log_every_steps == 0 or step == plan.train_steps:
            xent = float(xent_t)
            events.step(step, plan.train_steps, step / plan.steps_per_epoch, xent, optim.lr_at(step),
                        meter.window(step))
        if step % cfg.checkpoint_every_steps == 0 and step < plan.train_steps:
            with watchdog.paused():
                events.checkpoint(state.save(step))
        if eval_every and step % eval_every == 0 and step < plan.train_steps:
            with watchdog.paused(), meter.paused():
                state.sync_bn_statistics()
                res = evaluate.score(rt, net, data, cfg.eval_batch_size, cfg.net.image_size,
                                     cfg.net.centre_crop_padding)
            events.evaluation({**res, "global_step": step}, step / plan.steps_per_epoch,
                              cfg.eval_every_epochs)
            if target.reached_by(res["top1"], step, events.seconds()):
                rt.log(f"target top-1 {cfg.target_accuracy} reached at step {step} "
                       f"(epoch {step / plan.steps_per_epoch:.2f}): stopping")
                last = step
                break
    watchdog.stop()

    # ---- the end: last checkpoint, report, evaluation ------------------------------------------
    seconds, images_per_second = meter.totals(last - start_step)
    path = state.save(last)  # averages the BN statistics first
    if path:
        events.checkpoint(path)
    report = {
        "ttt_seconds": round(seconds, 3),
        "images_per_second": round(images_per_second, 2) if images_per_second else None,
        "global_batch_size": plan.global_batch, "num_ranks": rt.size, "recipe": plan.recipe,
        "train_steps": plan.train_steps, "steps_this_run": last - start_step, "last_step": last,
        "start_step": start_step, "epochs": round(plan.epochs, 3), "final_loss": xent,
        "precision": cfg.net.precision, "skipped_steps": bad.count, "model": cfg.net.model,
        "image_size": cfg.net.image_size, "plan": plan.as_dict(), "threads": vars(rt.threads),
        "rank_weight_checksums": {"after_broadcast": checksums_at_start,
                                  "at_end": _rank_checksums(rt, net.variables + optim.variables)},
    }
    report.update(target.report(events.history))
    events.report(report, _write_or_explain)
    if (cfg.eval_at_end or cfg.target_accuracy) and target.step != last:
        res = evaluate.score(rt, net, data, cfg.eval_batch_size, cfg.net.image_size,
                             cfg.net.centre_crop_padding)
        res["global_step"] = last
        res["checkpoint"] = str(checkpoint.checkpoint_root(cfg.model_dir) / f"ckpt-{last:08d}")
        if rt.rank == 0:
            _write_or_explain(cfg.model_dir / evaluate.RESULTS,
                              lambda p: evaluate.write_results(cfg.model_dir, res))
        events.evaluation(res, last / plan.steps_per_epoch)
        target.reached_by(res["top1"], last, events.seconds())
        report["eval"] = res
        report.update(target.report(events.history))
        events.report(report, _write_or_explain, quiet=True)  # now with the final evaluation
    if mlperf:
        mlperf.run_stop(target.step is not None or cfg.target_accuracy is None)
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

    def report(self, history) -> dict:
        evals = history.evals
        best = max(evals, key=lambda e: e["top1"]) if evals else None
        out = {"evaluations": evals, "best_top1": best["top1"] if best else None}
        if self.accuracy is not None:
            hit = self.step is not None
            out.update(target_accuracy=self.accuracy, reached_target=hit, steps_to_target=self.step,
                       epochs_to_target=round(self.step / self.plan.steps_per_epoch, 3) if hit else None,
                       time_to_target_seconds=round(self.seconds, 3) if hit else None)
        return out


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

    def __init__(self, rt, cfg: TrainConfig, net, optim, fingerprint: str, num_classes: int,
                 global_batch: int):
        self.rt, self.cfg, self.net = rt, cfg, net
        self.ckpt = rt.tf.train.Checkpoint(model=net, optimizer=optim.optimizer)
        self.fingerprint = fingerprint
        self.meta = {"model": vars(cfg.net), "num_classes": num_classes,
                     "data": fingerprint, "global_batch": global_batch, "num_ranks": rt.size}

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
        target = checkpoint.checkpoint_root(self.cfg.model_dir) / f"ckpt-{step:08d}"
        return _write_or_explain(target, lambda _: checkpoint.save(
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


def _prepare_model_dir(rt, model_dir: Path) -> None:
    """Rank 0: the model dir must be writable before the first step, not at the first save."""
    try:
        atomic.ensure_writable_dir(model_dir)
    except OSError as exc:
        raise TrainingError(f"--model-dir {model_dir} is not writable: {exc}") from None
    for p in checkpoint.remove_partial(model_dir):
        rt.log(f"removed unfinished checkpoint {p}")
    # Of an earlier run. Ranks write theirs only after the broadcast that follows this, so none is lost.
    shutil.rmtree(model_dir / HEARTBEATS, ignore_errors=True)


def _check_model_dir_is_shared(rt, model_dir: Path) -> None:
    """Every rank must see rank 0's model dir (checkpoints, heartbeats): on a cluster, a shared
    file system. Rank 0 leaves a token there; a rank that cannot read it names its host."""
    if rt.size == 1:
        return
    token = rt.hvd.broadcast_object(f"{os.getpid()}-{time.time_ns()}" if rt.rank == 0 else None,
                                    root_rank=0)
    path = model_dir / ".hvdtrain-run"
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
