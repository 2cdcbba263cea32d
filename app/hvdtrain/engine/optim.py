"""The optimizer of a run: which one, on which LR curve, and where weight decay is applied.

``make_optimizer`` is used by ``hvdtrain train`` and ``hvdtrain bench`` alike, so the benchmark
times the optimizer training runs. Two optimizers, both from the plan (``config.make_plan``):
- ``sgd``: momentum SGD with weight decay as an L2 penalty on the conv/dense kernels added to the
  loss (the seed's, tensorflow/tpu's);
- ``lars``: LARS (You et al. 2017, as in MLPerf's ResNet reference): each conv/dense kernel's LR
  is scaled by its trust ratio eta*|w|/(|g| + wd*|w|) and weight decay is added to its gradient
  inside the update; BN parameters and biases get neither.
The step asks this module for the penalty (zero for LARS); it does not decide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hvdtrain.training.config import Plan
from hvdtrain.training.schedule import keras_schedule


@dataclass
class Optimizer:
    optimizer: Any        # a tf.keras optimizer; its ``iterations`` is the global step
    schedule: Any         # LR as a function of the step (tf.keras LearningRateSchedule)
    penalty: Any          # () -> scalar tensor added to the loss (L2 weight decay; 0 for LARS)

    @property
    def variables(self) -> list:
        return self.optimizer.variables

    def lr_at(self, step: int) -> float:
        """The LR the update of global step ``step`` (1-based) used."""
        return float(self.schedule(step - 1))


def trust_ratio(tf, w, g, eta: float, weight_decay: float):
    """LARS's per-layer LR factor; 1 where the weight or the gradient is all zeros."""
    w_norm, g_norm = tf.norm(w), tf.norm(g)
    ratio = eta * w_norm / (g_norm + weight_decay * w_norm)
    return tf.where((w_norm > 0) & (g_norm > 0), ratio, tf.ones_like(ratio))


def lars_class(tf):
    """The LARS optimizer class (built on demand: TensorFlow is imported after thread setup)."""

    class LARS(tf.keras.optimizers.Optimizer):
        """Momentum SGD with layer-wise trust ratios; ``adapted``: the variables that get trust
        ratio and weight decay (conv/dense kernels)."""

        def __init__(self, learning_rate, momentum: float, weight_decay: float, eta: float,
                     adapted, name: str = "LARS"):
            super().__init__(name=name, jit_compile=False)
            self._learning_rate = self._build_learning_rate(learning_rate)
            self.momentum, self.lars_weight_decay, self.eta = momentum, weight_decay, eta
            self._adapted = {v.ref() for v in adapted}

        def build(self, var_list):
            super().build(var_list)
            if getattr(self, "_built", False):
                return
            self.momentums = [self.add_variable_from_reference(v, "m") for v in var_list]
            self._built = True

        def update_step(self, gradient, variable):
            lr = tf.cast(self.learning_rate, variable.dtype)
            m = self.momentums[self._index_dict[self._var_key(variable)]]
            if variable.ref() in self._adapted:  # decided when the step is traced
                lr = lr * trust_ratio(tf, variable, gradient, self.eta, self.lars_weight_decay)
                gradient = gradient + self.lars_weight_decay * variable
            m.assign(self.momentum * m - lr * gradient)
            variable.assign_add(m)

        def get_config(self):
            return {**super().get_config(), "momentum": self.momentum, "eta": self.eta,
                    "weight_decay": self.lars_weight_decay}

    return LARS


def make_optimizer(plan: Plan, net) -> Optimizer:
    import tensorflow as tf

    from hvdtrain.engine.model import decayed_variables

    schedule = keras_schedule(plan.base_lr, plan.peak_lr, plan.warmup_steps, plan.train_steps,
                              plan.lr_schedule)
    decayed = decayed_variables(net)
    if plan.optimizer == "lars":
        opt = lars_class(tf)(schedule, plan.momentum, plan.weight_decay, plan.lars_eta, decayed)
        wd = 0.0  # applied inside the update
    else:
        opt = tf.keras.optimizers.SGD(learning_rate=schedule, momentum=plan.momentum)
        wd = plan.weight_decay
    opt.build(net.trainable_variables)  # create the slots now so they are restored and broadcast

    def penalty():
        if not wd:
            return tf.constant(0.0)
        return wd * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in decayed])

    return Optimizer(opt, schedule, penalty)
