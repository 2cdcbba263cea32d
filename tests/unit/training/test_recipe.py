"""The MLPerf-grade recipe's pieces against their published formulas: LARS (one update, against an
independent NumPy version), poly2, label smoothing, and the RCP table's presets."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import tensorflow as tf

from hvdtrain.engine import optim, step
from hvdtrain.errors import ConfigError
from hvdtrain.training import recipes
from hvdtrain.training.config import OptimizerFlags, ScheduleFlags, imagenet_plan, make_plan
from hvdtrain.training.schedule import POLY2_END_LR, keras_schedule, lr


def lars_numpy(w, g, m, lr_, momentum, wd, eta, adapted):
    """You et al. / MLPerf: trust = eta |w| / (|g| + wd |w|) (1 if either norm is 0); kernels
    get trust-scaled LR and weight decay in the gradient; BN and biases get neither."""
    if adapted:
        wn, gn = np.linalg.norm(w), np.linalg.norm(g)
        trust = eta * wn / (gn + wd * wn) if wn > 0 and gn > 0 else 1.0
        lr_, g = lr_ * trust, g + wd * w
    m = momentum * m - lr_ * g
    return w + m, m


def test_one_lars_update_matches_numpy():
    rng = np.random.default_rng(0)
    kernel0 = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)
    bias0 = rng.normal(size=(8,)).astype(np.float32)
    gk, gb = (rng.normal(size=x.shape).astype(np.float32) * 0.1 for x in (kernel0, bias0))
    kernel, bias = tf.Variable(kernel0, name="conv/kernel"), tf.Variable(bias0, name="bn/beta")
    opt = optim.lars_class(tf)(0.5, momentum=0.9, weight_decay=1e-3, eta=0.02, adapted=[kernel])
    opt.build([kernel, bias])
    for k in range(2):  # the second update also checks the momentum slot
        opt.apply_gradients([(tf.constant(gk), kernel), (tf.constant(gb), bias)])
        if k == 0:
            wk, mk = lars_numpy(kernel0, gk, 0, 0.5, 0.9, 1e-3, 0.02, True)
            wb, mb = lars_numpy(bias0, gb, 0, 0.5, 0.9, 1e-3, 0.02, False)
        else:
            wk, mk = lars_numpy(wk, gk, mk, 0.5, 0.9, 1e-3, 0.02, True)
            wb, mb = lars_numpy(wb, gb, mb, 0.5, 0.9, 1e-3, 0.02, False)
        np.testing.assert_allclose(kernel.numpy(), wk, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias.numpy(), wb, rtol=1e-5, atol=1e-6)
    # Both trust ratios are far from 1, so adapting the bias (or not the kernel) would have failed.
    for w, g in ((kernel0, gk), (bias0, gb)):
        assert abs(float(optim.trust_ratio(tf, tf.constant(w), tf.constant(g), 0.02, 1e-3)) - 1) > 0.5


def test_trust_ratio_is_one_for_a_zero_gradient():
    w = tf.constant([3.0, 4.0])
    assert float(optim.trust_ratio(tf, w, tf.zeros(2), 0.001, 1e-4)) == 1.0
    assert float(optim.trust_ratio(tf, w, tf.constant([0.0, 1.0]), 0.001, 0.0)) == pytest.approx(0.005)


def test_poly2_points():
    base, peak, warm, total = 0.0, 18.0, 100, 1100
    assert lr("poly2", 50, base, peak, warm, total) == pytest.approx(9.0)  # warm-up, halfway
    assert lr("poly2", warm, base, peak, warm, total) == pytest.approx(peak)  # warm-up end
    mid = POLY2_END_LR + (peak - POLY2_END_LR) * 0.5 ** 2
    assert lr("poly2", 600, base, peak, warm, total) == pytest.approx(mid)  # mid-decay
    assert lr("poly2", total, base, peak, warm, total) == pytest.approx(POLY2_END_LR)  # last step
    sched = keras_schedule(base, peak, warm, total, "poly2")
    for s in (0, 50, 99, 100, 101, 600, 1099, 1100):
        assert float(sched(s)) == pytest.approx(lr("poly2", s, base, peak, warm, total), rel=1e-5, abs=1e-6)


def test_label_smoothing_is_the_smoothed_target_cross_entropy():
    logits = tf.constant([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = tf.constant([0, 2])
    got = step.cross_entropy(tf, labels, logits, 0.1).numpy()
    logp = tf.nn.log_softmax(logits).numpy()
    target = np.full((2, 3), 0.1 / 3)
    target[[0, 1], [0, 2]] += 0.9
    np.testing.assert_allclose(got, -(target * logp).sum(1), rtol=1e-6)
    plain = step.cross_entropy(tf, labels, logits, 0.0).numpy()
    np.testing.assert_allclose(plain, -logp[[0, 1], [0, 2]], rtol=1e-6)


def _rcp_table():
    path = resources.files("mlperf_logging.rcp_checker") / "training_4.0.0" / "rcps_resnet.json"
    return {int(e["BS"]): e for e in json.loads(path.read_text()).values()}


def test_mlperf_recipe_takes_an_exact_rcp_row():
    row = _rcp_table()[8192]
    plan = imagenet_plan(8192, 64, "mlperf")
    hp = row["Hyperparams"]
    got = (plan.optimizer, plan.lr_schedule, plan.label_smoothing, plan.base_lr)
    assert got == ("lars", "poly2", 0.1, 0.0)
    assert plan.peak_lr == hp["opt_base_learning_rate"] and plan.momentum == hp["opt_momentum"]
    assert plan.weight_decay == hp["opt_weight_decay"]
    assert plan.warmup_steps == round(hp["opt_learning_rate_warmup_epochs"] * plan.whole_steps_per_epoch)
    decay = plan.train_steps - plan.warmup_steps
    assert decay == pytest.approx(hp["opt_learning_rate_decay_steps"], rel=0.02)
    assert plan.expected_epochs == pytest.approx(np.mean(row["Epochs to converge"]))
    assert "RCP row 8,192" in plan.describe()


def test_mlperf_recipe_interpolates_at_the_seed_batch():
    t = (np.log2(24576) - np.log2(13056)) / (np.log2(32768) - np.log2(13056))
    lo, hi = _rcp_table()[13056]["Hyperparams"], _rcp_table()[32768]["Hyperparams"]
    plan = imagenet_plan(24576, 512, "mlperf")
    lr_lo, lr_hi = lo["opt_base_learning_rate"], hi["opt_base_learning_rate"]
    assert plan.peak_lr == pytest.approx(lr_lo * (1 - t) + lr_hi * t)
    assert plan.momentum == pytest.approx(0.9 * (1 - t) + 0.94 * t)
    assert "interpolated" in plan.describe() and "13,056 and 32,768" in plan.describe()
    assert 50 < plan.expected_epochs < 55 and plan.epochs < 90  # vs the seed's 90
    seed = imagenet_plan(24576, 512)
    assert (seed.train_steps, seed.optimizer, seed.lr_schedule) == (4680, "sgd", "linear")


def test_flags_win_over_the_recipe():
    cfg = ScheduleFlags(train_batch_size=8192, recipe="mlperf", peak_lr=3.0, lr_schedule="linear",
                        train_epochs=10)
    plan = make_plan(cfg, 1_281_167, 8, OptimizerFlags(optimizer="sgd", label_smoothing=0.0,
                                                      momentum=0.8))
    assert (plan.peak_lr, plan.lr_schedule, plan.optimizer, plan.label_smoothing, plan.momentum) == \
        (3.0, "linear", "sgd", 0.0, 0.8)
    assert plan.weight_decay == _rcp_table()[8192]["Hyperparams"]["opt_weight_decay"]  # not given


@pytest.mark.parametrize("kw,flag", [({"recipe": "fast"}, "--recipe"),
                                     ({"lr_schedule": "cosine"}, "--lr-schedule")])
def test_bad_recipe_flags_are_named(kw, flag):
    with pytest.raises(ConfigError, match=flag):
        ScheduleFlags(**kw).check()
    with pytest.raises(ConfigError, match="--optimizer"):
        OptimizerFlags(optimizer="adam").check()


def test_recipes_are_written_once():
    assert recipes.SURFSARA.epochs == 90 and recipes.recipe("surfsara", 24576) is recipes.SURFSARA
    # the names they had while there was one recipe are still accepted, and stored as the new ones
    assert recipes.recipe("seed", 24576) is recipes.SURFSARA
    assert (ScheduleFlags(recipe="seed").recipe, ScheduleFlags(lr_schedule="seed").lr_schedule) == \
        ("surfsara", "linear")


def test_recipes_side_by_side_for_the_seed_batch():
    from hvdtrain.reporting.report import compare_recipes

    text = compare_recipes(24576)
    assert "4,680 (260)" in text and "3,571 (718)" in text  # steps (warm-up): seed, mlperf
    assert "linear: 0.1 -> 4.8 -> 0" in text and "poly2: 0 -> 18.57 -> 0.0001" in text
    assert "1.71x fewer epochs to target than surfsara's 90 (the seed's)" in text
