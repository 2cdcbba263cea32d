"""The seed's numbers: the derived plan and the warm-up-then-linear-decay schedule."""

import pytest

from hvdtrain.errors import ConfigError
from hvdtrain.training.config import ScheduleFlags, make_plan
from hvdtrain.training.schedule import keras_schedule, warmup_then_linear_decay


def _seed_cfg(**kw):
    return ScheduleFlags(train_batch_size=24576, **kw)


def test_seed_plan_for_imagenet():
    plan = make_plan(_seed_cfg(), 1_281_167, 512)
    assert round(plan.steps_per_epoch, 1) == 52.1
    assert plan.warmup_steps == 260 and plan.train_steps == 4680
    assert plan.peak_lr == pytest.approx(4.8) and plan.per_rank_batch == 48
    text = plan.describe()
    assert "52.1 steps/epoch" in text and "warm-up 260" in text and "4,680 train steps" in text


def test_explicit_values_win():
    plan = make_plan(_seed_cfg(train_steps=100, warmup_steps=10, peak_lr=1.0), 1_281_167, 2)
    assert (plan.train_steps, plan.warmup_steps, plan.peak_lr) == (100, 10, 1.0)


def test_a_peak_below_the_seeds_base_lr_warms_up_from_zero_and_says_so():
    """At global batch 8 the seed's peak is 0.1 * 8/512: a warm-up from its base 0.1 would lower it."""
    plan = make_plan(ScheduleFlags(train_batch_size=8), 1_281_167, 2)
    assert plan.peak_lr == pytest.approx(0.0015625) and plan.base_lr == 0.0
    assert warmup_then_linear_decay(plan.warmup_steps // 2, plan.base_lr, plan.peak_lr, plan.warmup_steps,
                                    plan.train_steps) < plan.peak_lr
    text = plan.describe()
    assert "LR 0 -> peak 0.0015625" in text and "warm-up starts from 0 instead" in text
    at_seed_batch = make_plan(_seed_cfg(), 1_281_167, 512)
    assert at_seed_batch.base_lr == 0.1 and "note:" not in at_seed_batch.describe()
    assert make_plan(ScheduleFlags(train_batch_size=8, base_lr=0.1), 1_281_167, 2).base_lr == 0.1


def test_epochs_instead_of_steps():
    assert make_plan(_seed_cfg(train_epochs=10), 1_281_167, 2).train_steps == 520


def test_batch_must_divide_over_ranks():
    with pytest.raises(ConfigError, match=r"--train-batch-size 24576.*5 ranks"):
        make_plan(_seed_cfg(), 1_281_167, 5)


def test_steps_and_epochs_conflict():
    with pytest.raises(ConfigError, match="--train-steps or --train-epochs"):
        _seed_cfg(train_steps=3, train_epochs=2.0).check()


@pytest.mark.parametrize("step,lr", [(0, 0.1), (130, 2.45), (260, 4.8), (2470, 2.4), (4680, 0.0)])
def test_seed_schedule_points(step, lr):
    assert warmup_then_linear_decay(step, 0.1, 4.8, 260, 4680) == pytest.approx(lr)


def test_keras_schedule_matches_plain_function():
    sched = keras_schedule(0.1, 4.8, 260, 4680)
    for step in (0, 1, 100, 259, 260, 261, 1000, 2470, 4679, 4680, 5000):
        assert float(sched(step)) == pytest.approx(warmup_then_linear_decay(step, 0.1, 4.8, 260, 4680),
                                                   rel=1e-5, abs=1e-6)
