"""Top-1/Top-5 over every validation image exactly once, on 1..N ranks.

Each rank scores a disjoint part (``input_pipeline.eval_dataset``), padded to a common step count
with masked blanks so no rank waits on an allreduce the others never reach; the four sums
(top-1 hits, top-5 hits, loss, images) are allreduced at the end.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import replace
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.data import integrity, manifest
from hvdtrain.reporting.results import EvalResult
from hvdtrain.run_dir import RunDir
from hvdtrain.training import checkpoint
from hvdtrain.training.config import EvalConfig


def score(rt, net, man: manifest.Manifest, batch: int, image_size: int, crop_padding: int) -> EvalResult:
    """Run the network over the validation split; every rank returns the same totals."""
    tf, hvd = rt.tf, rt.hvd
    from hvdtrain.engine import input_pipeline

    ds, steps = input_pipeline.eval_dataset(man, rt.rank, rt.size, batch, image_size, crop_padding)
    eval_step = _eval_step(tf, net, min(5, man.num_classes))

    totals = tf.zeros([4])
    marks = {max(1, round(steps * i / 10)) for i in range(1, 11)}
    start = time.perf_counter()
    try:
        for i, (images, labels, mask) in enumerate(ds, start=1):
            totals += eval_step(images, labels, mask)
            if i in marks:
                rt.log(f"Evaluation [{i}/{steps}]")
    except tf.errors.DataLossError as exc:
        raise integrity.corrupt_record(rt.rank, "validation", man.shard_dir, exc) from None
    totals = hvd.allreduce(totals, op=hvd.Sum, name="eval_totals").numpy()
    secs = time.perf_counter() - start
    n = int(totals[3] + 0.5)
    expected = man.validation.num_images
    if n != expected:  # a broken exactly-once guarantee must never pass silently
        raise RuntimeError(f"evaluation scored {n} images but the manifest lists {expected}")
    return EvalResult(float(totals[0] / n), float(totals[1] / n), float(totals[2] / n), n, round(secs, 3),
                      round(n / secs, 2))


_EVAL_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _eval_step(tf, net, k5: int):
    """One traced evaluation step per network: evaluating every epoch must not retrace each time."""
    if net not in _EVAL_STEPS:
        @tf.function
        def eval_step(images, labels, mask):
            logits = tf.cast(net(images, training=False), tf.float32)
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            top1 = tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32)
            top5 = tf.cast(tf.math.in_top_k(labels, logits, k5), tf.float32)
            return tf.stack([tf.reduce_sum(top1 * mask), tf.reduce_sum(top5 * mask),
                             tf.reduce_sum(xent * mask), tf.reduce_sum(mask)])
        _EVAL_STEPS[net] = eval_step
    return _EVAL_STEPS[net]


class Evaluator:
    """When and how a training run evaluates, mid-run and at the end, on one path.

    Mid-run: every ``every_steps`` steps before the last (``due``). At the end: once, unless
    ``wanted`` is False or that step was already evaluated. ``score(step, final)`` returns the
    totals (its caller syncs BN statistics or writes results as the moment needs);
    ``record(result, epoch, next_block_epochs)`` logs them (``Events.evaluation``).
    Both deal in ``EvalResult``."""

    def __init__(self, score, record, every_steps: int | None, last_step: int, steps_per_epoch: float,
                 every_epochs: float | None = None, wanted_at_end: bool = True):
        self.score, self.record = score, record
        self.every_steps, self.last_step, self.steps_per_epoch = every_steps, last_step, steps_per_epoch
        self.every_epochs, self.wanted_at_end = every_epochs, wanted_at_end
        self.done_at: int | None = None

    def due(self, step: int) -> bool:
        return bool(self.every_steps) and step % self.every_steps == 0 and step < self.last_step

    def due_at_end(self, step: int) -> bool:
        return self.wanted_at_end and self.done_at != step

    def evaluate(self, step: int, final: bool = False) -> EvalResult:
        res = replace(self.score(step, final), global_step=step)
        self.record(res, step / self.steps_per_epoch, None if final else self.every_epochs)
        self.done_at = step
        return res


def write_results(model_dir, res: EvalResult) -> Path:
    path = RunDir(model_dir).eval_results
    atomic.write_json(path, res.to_json())
    return path


def run_eval(cfg: EvalConfig) -> EvalResult:
    """``hvdtrain eval``: restore a checkpoint, score every validation image, write results."""
    cfg.check()
    data_dir, model_dir, eval_batch_size = cfg.data.data_dir, cfg.model_dir, cfg.eval_batch_size
    man = manifest.load(data_dir, cfg.data.manifest)
    ckpt_dir, meta = checkpoint.resolve(cfg.checkpoint or model_dir)
    net_flags = checkpoint.model_flags(meta)
    if cfg.precision:
        net_flags.precision = cfg.precision
    from hvdtrain.cluster import runtime

    rt = runtime.start(cfg.threads, net_flags.precision, cfg.faults.stall_timeout)
    man = integrity.usable_manifest(rt, man, "validation", cfg.faults.skip_corrupt_shards)
    if int(meta["num_classes"]) != man.num_classes:
        raise manifest.DataError(f"checkpoint {ckpt_dir} has {meta['num_classes']} classes but "
                                 f"{data_dir} has {man.num_classes}")
    from hvdtrain.engine.model import build_resnet

    net = build_resnet(net_flags.model, man.num_classes, net_flags.image_size, net_flags.bn_decay)
    rt.tf.train.Checkpoint(model=net).read(checkpoint.tf_prefix(ckpt_dir)).expect_partial()
    rt.log(rt.describe_world())
    rt.log(f"eval: {ckpt_dir} (step {meta['step']}, {net_flags.model} @ {net_flags.image_size}px, "
           f"centre crop padding {net_flags.centre_crop_padding}, "
           f"{net_flags.precision}) on {man.validation.num_images} images, "
           f"{rt.size} rank(s), batch {eval_batch_size}/rank")
    res = replace(score(rt, net, man, eval_batch_size, net_flags.image_size, net_flags.centre_crop_padding),
                  global_step=int(meta["step"]), checkpoint=str(ckpt_dir))
    if rt.rank == 0:
        write_results(model_dir, res)
        rt.log(res.result_line())
    return res
