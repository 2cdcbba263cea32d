"""Learning-rate schedules. Change the LR curve here.

The seed's ``gradual_warmup_then_dec``: linear from ``base_lr`` to ``peak_lr`` over
``warmup_steps``, then polynomial (power 1) decay from ``peak_lr`` to 0 at ``train_steps``.
Seed numbers: 0.1 -> 4.8 over 260 steps, 2.4 at step 2,470, 0 at step 4,680.
"""

from __future__ import annotations


def warmup_then_linear_decay(step: float, base_lr: float, peak_lr: float, warmup_steps: int,
                             train_steps: int) -> float:
    """The schedule as a plain function (the plan printout and tests use this one)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr + (peak_lr - base_lr) * step / warmup_steps
    decay_steps = max(1, train_steps - warmup_steps)
    return peak_lr * max(0.0, 1.0 - (step - warmup_steps) / decay_steps)


def keras_schedule(base_lr: float, peak_lr: float, warmup_steps: int, train_steps: int):
    """The same curve as a ``tf.keras`` LearningRateSchedule, driven by ``optimizer.iterations``."""
    import tensorflow as tf

    class WarmupThenLinearDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = base_lr + (peak_lr - base_lr) * step / max(1, warmup_steps)
            frac = (step - warmup_steps) / max(1, train_steps - warmup_steps)
            decay = peak_lr * tf.maximum(0.0, 1.0 - frac)
            return tf.where(step < warmup_steps, warm, decay)

        def get_config(self):
            return {"base_lr": base_lr, "peak_lr": peak_lr, "warmup_steps": warmup_steps,
                    "train_steps": train_steps}

    return WarmupThenLinearDecay()
