"""The optimizer of a run: which one, on which LR curve, and where weight decay is applied.

``make_optimizer`` is used by ``hvdtrain train`` and ``hvdtrain bench`` alike, so the benchmark
times the optimizer training runs. Today: momentum SGD on the seed's warm-up-then-linear-decay
schedule, with weight decay as an L2 penalty on the conv/dense kernels added to the loss (the
seed's, tensorflow/tpu's). The step asks this module for that penalty; it does not decide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import OptimizerFlags, Plan
from .schedule import keras_schedule


@dataclass
class Optimizer:
    optimizer: Any        # a tf.keras optimizer; its ``iterations`` is the global step
    schedule: Any         # LR as a function of the step (tf.keras LearningRateSchedule)
    penalty: Any          # () -> scalar tensor added to the loss (L2 weight decay)

    @property
    def variables(self) -> list:
        return self.optimizer.variables

    def lr_at(self, step: int) -> float:
        """The LR the update of global step ``step`` (1-based) used."""
        return float(self.schedule(step - 1))


def make_optimizer(flags: OptimizerFlags, plan: Plan, net) -> Optimizer:
    import tensorflow as tf

    from .model import decayed_variables

    schedule = keras_schedule(plan.base_lr, plan.peak_lr, plan.warmup_steps, plan.train_steps)
    opt = tf.keras.optimizers.SGD(learning_rate=schedule, momentum=flags.momentum)
    opt.build(net.trainable_variables)  # create the slots now so they are restored and broadcast
    decayed = decayed_variables(net)
    wd = flags.weight_decay

    def penalty():
        return wd * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in decayed])

    return Optimizer(opt, schedule, penalty)
