"""The training step: forward, loss (+ the optimizer's weight-decay penalty), backward, Horovod
allreduce, update.

One function builds it for ``hvdtrain train`` and ``hvdtrain bench`` alike, so the benchmark
times exactly what training runs. The step returns the global (allreduced) cross-entropy and
whether the update was applied: a step with a non-finite loss or gradient is dropped on every
rank (the gradients are allreduced, so all ranks reach the same verdict), but still counted, so
the step, the LR and the data position stay aligned. Given ``requests`` (small integers, e.g. a
stop signal's number), it also returns their maximum over all ranks: one more tiny tensor in the
step's own Horovod cycle, so agreeing costs nothing (an allreduce of its own, outside the step,
waits a whole cycle: 23 ms a step, measured with HOROVOD_CYCLE_TIME=20 on 2 ranks).
"""

from __future__ import annotations


def make_train_step(rt, net, optim, label_smoothing: float = 0.0, inject_nan_at: int = 0,
                    compression: str = "none"):
    """``rt``: the started ``runtime``; ``optim``: an ``optim.Optimizer``; ``label_smoothing``: the
    plan's; ``inject_nan_at``: the ``faults`` hook (0 = off); ``compression``: what the gradients
    cross the network as (fp16: half the bytes, summed in fp16)."""
    tf, hvd = rt.tf, rt.hvd
    compression = compressor(tf, hvd, compression)
    opt = optim.optimizer

    @tf.function
    def train_step(images, labels, requests=None):
        with tf.GradientTape() as tape:
            logits = tf.cast(net(images, training=True), tf.float32)
            xent = tf.reduce_mean(cross_entropy(tf, labels, logits, label_smoothing))
            if inject_nan_at:  # traced only when the fault-injection hook is set
                xent = tf.where(opt.iterations + 1 == inject_nan_at, float("nan"), xent)
            loss = xent + optim.penalty()
        tape = hvd.DistributedGradientTape(tape, compression=compression)  # wrap: allreduce grads
        grads = tape.gradient(loss, net.trainable_variables)
        global_xent = hvd.allreduce(xent, name="xent")  # identical on every rank
        finite = tf.math.is_finite(global_xent) & tf.math.is_finite(tf.linalg.global_norm(grads))

        def apply():
            opt.apply_gradients(zip(grads, net.trainable_variables, strict=True))
            return tf.constant(True)

        def skip():
            opt.iterations.assign_add(1)
            return tf.constant(False)

        applied = tf.cond(finite, apply, skip)
        if requests is None:
            return global_xent, applied
        return global_xent, applied, hvd.allreduce(requests, op=hvd.Max, name="requests")

    return train_step


def make_local_step(rt, net, optim):
    """The training step without its allreduces: one rank's own compute and update, as fast as
    this rank can go (the node health check times it on every rank at once)."""
    tf, opt = rt.tf, optim.optimizer

    @tf.function
    def local_step(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(net(images, training=True), tf.float32)
            loss = tf.reduce_mean(cross_entropy(tf, labels, logits)) + optim.penalty()
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return (loss,)

    return local_step


def compressor(tf, hvd, name: str):
    """Horovod's compressor for ``name``. No bf16: Horovod 0.28.1's TF allreduce op rejects
    bfloat16 tensors ("DataType bfloat16 not in list of allowed values"; bench/NOTES.md)."""
    return {"none": hvd.Compression.none, "fp16": hvd.Compression.fp16}[name]


def cross_entropy(tf, labels, logits, label_smoothing: float = 0.0):
    """Per-example cross-entropy; with smoothing s the target is (1 - s) one-hot + s / classes."""
    if not label_smoothing:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    target = tf.one_hot(labels, logits.shape[-1])
    return tf.keras.losses.categorical_crossentropy(target, logits, from_logits=True,
                                                    label_smoothing=label_smoothing)
