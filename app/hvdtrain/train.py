"""``hvdtrain train``: the seed's recipe as Horovod data-parallel training, top to bottom.

1. load the manifest, bring up TF + Horovod (``runtime``), derive and print the plan (``config``),
   check the training shards against the manifest on all ranks (``integrity``);
2. build the model and momentum SGD on the warm-up-then-decay schedule (``schedule``);
3. rank 0 restores the newest valid checkpoint, then broadcasts every variable (weights,
   optimizer slots, step) from rank 0, so all ranks start identical;
4. each step (``step``): forward/backward on this rank's batch, gradients averaged by Horovod's
   allreduce, SGD update — the global batch is split evenly over the ranks. A step whose loss or
   gradients are not finite is not applied; the run stops (or skips up to ``--max-bad-steps``);
5. rank 0 logs, writes TensorBoard summaries and checkpoints; at the end, train_report.json.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import atomic, checkpoint, integrity, manifest
from .config import TrainConfig, make_plan
from .step import make_train_step
from .watchdog import HEARTBEATS, Watchdog

REPORT = "train_report.json"
INJECT_NAN_ENV = "HVDTRAIN_INJECT_NAN_AT_STEP"  # fault injection for tests: NaN loss at step k
INJECT_STALL_ENV = "HVDTRAIN_INJECT_STALL"  # "RANK:STEP": that rank hangs before that step


class TrainingError(RuntimeError):
    pass


def run_training(cfg: TrainConfig) -> dict:
    cfg.check()
    man = manifest.load(cfg.data_dir)
    if int(man["train"]["num_images"]) == 0:
        raise manifest.DataError(f"{cfg.data_dir} holds no training images")
    fingerprint = manifest.fingerprint(man)  # of the data set as prepared, for resume checks
    from . import runtime

    rt = runtime.start(cfg.threads, cfg.net.precision)
    tf, hvd = rt.tf, rt.hvd
    man = integrity.usable_manifest(rt, cfg.data_dir, man, "train", cfg.skip_corrupt_shards)
    if cfg.eval_at_end or cfg.eval_every_epochs:
        man = integrity.usable_manifest(rt, cfg.data_dir, man, "validation", cfg.skip_corrupt_shards)
    plan = make_plan(cfg, int(man["train"]["num_images"]), rt.size)
    rt.log(plan.describe())
    rt.log(rt.threads.describe())
    model_dir = Path(cfg.model_dir)
    if rt.rank == 0:
        _prepare_model_dir(rt, model_dir)

    from . import evaluate, input_pipeline
    from .model import build_resnet, decayed_variables
    from .schedule import keras_schedule

    num_classes = int(man["num_classes"])
    tf.keras.utils.set_random_seed(cfg.seed)  # the initial weights (rank 0's are broadcast) are seeded too
    net = build_resnet(cfg.net.model, num_classes, cfg.net.image_size, cfg.net.bn_decay)
    lr = keras_schedule(plan.base_lr, plan.peak_lr, plan.warmup_steps, plan.train_steps)
    opt = tf.keras.optimizers.SGD(learning_rate=lr, momentum=cfg.momentum)
    opt.build(net.trainable_variables)  # create the slots now so they are restored and broadcast
    ckpt = tf.train.Checkpoint(model=net, optimizer=opt)
    if rt.rank == 0:
        _resume(rt, ckpt, model_dir, fingerprint, cfg)
    hvd.broadcast_variables(net.variables + opt.variables, root_rank=0)
    checksums_at_start = _rank_checksums(rt, net.variables + opt.variables)
    start_step = int(opt.iterations.numpy())
    if start_step >= plan.train_steps:
        rt.log(f"model dir {model_dir} is already at step {start_step} of {plan.train_steps}; nothing to do")

    # The stream starts where the checkpoint left it (epoch and position within it).
    ds = input_pipeline.train_dataset(cfg.data_dir, man, rt.rank, rt.size, plan.per_rank_batch,
                                      cfg.net.image_size, seed=cfg.seed, min_area=cfg.min_crop_area,
                                      flip=cfg.random_flip, start_step=start_step)
    train_step = make_train_step(tf, hvd, net, opt, cfg.net.weight_decay, decayed_variables(net),
                                 inject_nan_at=int(os.environ.get(INJECT_NAN_ENV, "0")))

    writer = tf.summary.create_file_writer(str(model_dir / "train")) if rt.rank == 0 else None
    meta = {"model": vars(cfg.net), "num_classes": num_classes, "data": fingerprint,
            "global_batch": plan.global_batch, "num_ranks": rt.size}

    def sync_bn_statistics() -> None:
        """BN moving mean/variance are updated from each rank's own batches; average them so the
        checkpoint and the evaluation use statistics of all the data and all ranks are identical."""
        if rt.size > 1 and net.non_trainable_variables:
            averaged = hvd.grouped_allreduce(net.non_trainable_variables, op=hvd.Average)
            for var, value in zip(net.non_trainable_variables, averaged, strict=True):
                var.assign(value)

    watchdog = Watchdog(cfg.threads.stall_timeout, rt.rank, rt.size, model_dir / HEARTBEATS)
    stall_rank, _, stall_step = os.environ.get(INJECT_STALL_ENV, "-1:0").partition(":")

    def save(step: int) -> None:
        with watchdog.paused():
            sync_bn_statistics()
            if rt.rank == 0:
                path = _save_checkpoint(model_dir, step, ckpt, meta, cfg.keep_checkpoints)
                rt.log(f"checkpoint {path}")

    def lr_at(step: int) -> float:
        return float(lr(step - 1))

    eval_every = (max(1, round(cfg.eval_every_epochs * plan.steps_per_epoch))
                  if cfg.eval_every_epochs else None)
    t_start = time.perf_counter()
    t_window, window_start_step = t_start, start_step
    t_first = None  # end of the first step (graph tracing excluded from throughput)
    xent, bad_steps = float("nan"), 0
    it = iter(ds)
    for step in range(start_step + 1, plan.train_steps + 1):
        if rt.rank == int(stall_rank) and step == int(stall_step):
            time.sleep(1e6)  # injected hang (tests): a rank stuck in I/O or in a bad node
        try:
            images, labels = next(it)
        except tf.errors.DataLossError as exc:
            raise integrity.corrupt_record(rt.rank, "train", cfg.data_dir, exc) from None
        watchdog.entering_step()
        xent_t, applied = train_step(images, labels)
        watchdog.kick(step)
        if not bool(applied):
            bad_steps += 1
            msg = (f"loss or gradients not finite at step {step} (loss {float(xent_t)}, "
                   f"LR {lr_at(step):.5g})")
            if bad_steps > cfg.max_bad_steps:
                last = checkpoint.latest(model_dir) if rt.rank == 0 else None
                raise TrainingError(f"{msg}; stopping. The last good checkpoint "
                                    f"{last[0] if last else '(none yet)'} is intact.")
            rt.log(f"WARNING: {msg}; update skipped ({bad_steps} of at most {cfg.max_bad_steps})")
        if t_first is None:
            xent = float(xent_t)
            t_first = t_window = time.perf_counter()
            window_start_step = step
        if step % cfg.log_every_steps == 0 or step == plan.train_steps:
            xent = float(xent_t)
            now = time.perf_counter()
            ips = (step - window_start_step) * plan.global_batch / max(1e-9, now - t_window)
            rate = f"{ips:,.1f} images/s" if step > window_start_step else "(first step)"
            rt.log(f"step {step}/{plan.train_steps} epoch {step / plan.steps_per_epoch:.2f} "
                   f"loss {xent:.4f} lr {lr_at(step):.5g} {rate}")
            if writer:
                with writer.as_default(step=step):
                    tf.summary.scalar("loss", xent)
                    tf.summary.scalar("learning_rate", lr_at(step))
                    if step > window_start_step:
                        tf.summary.scalar("images_per_second", ips)
            t_window, window_start_step = now, step
        if step % cfg.checkpoint_every_steps == 0 and step < plan.train_steps:
            save(step)
        if eval_every and step % eval_every == 0 and step < plan.train_steps:
            with watchdog.paused():
                sync_bn_statistics()
                res = evaluate.score(rt, net, cfg.data_dir, man, cfg.eval_batch_size,
                                     cfg.net.image_size)
            rt.log(evaluate.seed_line({**res, "global_step": step}))
    watchdog.stop()
    t_end = time.perf_counter()
    steps_done = plan.train_steps - start_step
    save(plan.train_steps)  # averages the BN statistics first
    checksums_at_end = _rank_checksums(rt, net.variables + opt.variables)

    timed_steps = steps_done - 1
    report = {
        "ttt_seconds": round(t_end - t_start, 3),
        "images_per_second": round(timed_steps * plan.global_batch / (t_end - t_first), 2)
        if timed_steps > 0 and t_first else None,
        "global_batch_size": plan.global_batch, "num_ranks": rt.size,
        "train_steps": plan.train_steps, "steps_this_run": steps_done, "start_step": start_step,
        "epochs": round(plan.epochs, 3), "final_loss": xent, "precision": cfg.net.precision,
        "skipped_steps": bad_steps, "model": cfg.net.model, "image_size": cfg.net.image_size,
        "plan": plan.as_dict(), "threads": vars(rt.threads),
        "rank_weight_checksums": {"after_broadcast": checksums_at_start, "at_end": checksums_at_end},
    }
    if rt.rank == 0:
        _write_or_explain(model_dir / REPORT, lambda p: atomic.write_json(p, report))
        ips = report["images_per_second"]
        rt.log(f"trained {steps_done} steps in {report['ttt_seconds']:.1f} s (time-to-train); "
               + (f"{ips:,.1f} images/s global" if ips else "too few steps to time"))
    if cfg.eval_at_end:
        res = evaluate.score(rt, net, cfg.data_dir, man, cfg.eval_batch_size, cfg.net.image_size)
        res["global_step"] = plan.train_steps
        res["checkpoint"] = str(checkpoint.checkpoint_root(model_dir) / f"ckpt-{plan.train_steps:08d}")
        if rt.rank == 0:
            _write_or_explain(model_dir / evaluate.RESULTS, lambda p: evaluate.write_results(model_dir, res))
            rt.log(evaluate.seed_line(res))
        report["eval"] = res
    return report


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


def _save_checkpoint(model_dir: Path, step: int, ckpt, meta: dict, keep: int) -> Path:
    return _write_or_explain(checkpoint.checkpoint_root(model_dir) / f"ckpt-{step:08d}",
                             lambda _: checkpoint.save(model_dir, step, ckpt, meta, keep=keep))


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


def _resume(rt, ckpt, model_dir: Path, fingerprint: str, cfg: TrainConfig) -> None:
    found = checkpoint.latest(model_dir)
    if not found:
        return
    path, meta = found
    if meta.get("data") != fingerprint:
        raise manifest.DataError(
            f"{path} was trained on another data set (fingerprint {meta.get('data')}, "
            f"{cfg.data_dir} has {fingerprint}: different shards, classes or labels); "
            f"use a new --model-dir or the original data")
    if meta.get("model", {}).get("model") != cfg.net.model:
        raise TrainingError(f"{path} holds a {meta['model'].get('model')}, not --model {cfg.net.model}")
    ckpt.read(checkpoint.tf_prefix(path)).assert_existing_objects_matched()
    rt.log(f"resumed from {path} (step {meta['step']}, saved by {meta.get('num_ranks')} rank(s))")
