"""Learning-rate schedules. Change the LR curve here.

Both start with a linear warm-up from ``base_lr`` to ``peak_lr`` over ``warmup_steps``; then
- ``linear``: the seed's ``gradual_warmup_then_dec``, linear (power 1) decay to 0 at ``train_steps``
  (seed numbers: 0.1 -> 4.8 over 260 steps, 2.4 at step 2,470, 0 at step 4,680);
- ``poly2``: MLPerf's ResNet schedule, power-2 decay to ``POLY2_END_LR`` at ``train_steps``:
  end + (peak - end) * (1 - (step - warmup) / (train - warmup))^2.
``lr`` is the plain function (plan printout, tests); ``keras_schedule`` is the same curve in TF.
"""

from __future__ import annotations

POLY2_END_LR = 1e-4  # MLPerf's end LR
POWERS = {"linear": 1, "poly2": 2}
ALIASES = {"seed": "linear"}  # `--lr-schedule seed`, as it was named first


def end_lr(kind: str) -> float:
    return POLY2_END_LR if kind == "poly2" else 0.0


def lr(kind: str, step: float, base_lr: float, peak_lr: float, warmup_steps: int,
       train_steps: int) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr + (peak_lr - base_lr) * step / warmup_steps
    frac = min(1.0, max(0.0, (step - warmup_steps) / max(1, train_steps - warmup_steps)))
    end = end_lr(kind)
    return end + (peak_lr - end) * (1.0 - frac) ** POWERS[kind]


def warmup_then_linear_decay(step: float, base_lr: float, peak_lr: float, warmup_steps: int,
                             train_steps: int) -> float:
    """The seed's schedule (``lr("linear", ...)``)."""
    return lr("linear", step, base_lr, peak_lr, warmup_steps, train_steps)


def keras_schedule(base_lr: float, peak_lr: float, warmup_steps: int, train_steps: int,
                   kind: str = "linear"):
    """The curve as a ``tf.keras`` LearningRateSchedule, driven by ``optimizer.iterations``."""
    import tensorflow as tf

    end, power = end_lr(kind), POWERS[kind]

    class WarmupThenDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = base_lr + (peak_lr - base_lr) * step / max(1, warmup_steps)
            frac = tf.clip_by_value((step - warmup_steps) / max(1, train_steps - warmup_steps), 0.0, 1.0)
            decay = end + (peak_lr - end) * (1.0 - frac) ** power
            return tf.where(step < warmup_steps, warm, decay)

        def get_config(self):
            return {"base_lr": base_lr, "peak_lr": peak_lr, "warmup_steps": warmup_steps,
                    "train_steps": train_steps, "kind": kind}

    return WarmupThenDecay()
