"""``M/mlperf.log``: the run in MLPerf's logging format, written with the ``mlperf-logging``
package's ``mllog`` and its constants, so the package's own compliance checker can read it.

Rank 0 only. One file per process run (a resumed run starts a new log at its resume point:
MLPerf has no notion of resuming). The division is ``closed`` when the run follows the closed
rules' optimizer and schedule (LARS, poly2 to 1e-4) and ``open`` otherwise (the seed's SGD decays
to 0, which the closed SGD rules do not allow).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hvdtrain.run_dir import RunDir
from hvdtrain.training.config import Plan


class MLPerfLog:
    def __init__(self, model_dir: Path, plan: Plan, num_eval_images: int, platform: str):
        from mlperf_logging import mllog
        from mlperf_logging.mllog import constants as c

        self.c = c
        logger = logging.getLogger("hvdtrain.mlperf")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        for h in list(logger.handlers):  # a second run in one process (tests) starts a new file
            logger.removeHandler(h)
            h.close()
        logger.addHandler(logging.FileHandler(RunDir(model_dir).mlperf_log, mode="w"))
        mllog.config(logger=logger, root_dir=str(Path(__file__).parent))
        self.log = mllog.get_mllogger()
        self.plan = plan
        self.closed = plan.optimizer == "lars" and plan.lr_schedule == "poly2"
        self.log.event(c.CACHE_CLEAR, True)
        self.log.start(c.INIT_START)
        for key, value in ((c.SUBMISSION_ORG, "hvdtrain"), (c.SUBMISSION_PLATFORM, platform),
                           (c.SUBMISSION_DIVISION, "closed" if self.closed else "open"),
                           (c.SUBMISSION_STATUS, "research"), (c.SUBMISSION_BENCHMARK, c.RESNET),
                           (c.GLOBAL_BATCH_SIZE, plan.global_batch),
                           (c.GRADIENT_ACCUMULATION_STEPS, 1),
                           (c.TRAIN_SAMPLES, plan.num_train_images), (c.EVAL_SAMPLES, num_eval_images),
                           (c.MODEL_BN_SPAN, plan.per_rank_batch),
                           (c.OPT_NAME, c.LARS if plan.optimizer == "lars" else c.SGD)):
            self.log.event(key, value)
        self._hyperparameters()

    def _hyperparameters(self) -> None:
        c, p = self.c, self.plan
        warmup_epochs = p.warmup_steps / p.steps_per_epoch
        decay_steps = p.train_steps - p.warmup_steps
        power = 2 if p.lr_schedule == "poly2" else 1
        if p.optimizer == "lars":
            pairs = ((c.LARS_OPT_BASE_LEARNING_RATE, p.peak_lr), (c.LARS_OPT_END_LR, p.end_lr),
                     (c.LARS_OPT_LR_DECAY_POLY_POWER, power), (c.LARS_OPT_LR_DECAY_STEPS, decay_steps),
                     (c.LARS_EPSILON, 0.0), (c.LARS_OPT_LEARNING_RATE_WARMUP_EPOCHS, warmup_epochs),
                     (c.LARS_OPT_MOMENTUM, p.momentum), (c.LARS_OPT_WEIGHT_DECAY, p.weight_decay))
        else:  # the closed SGD rules' keys (the constants module names only the LARS ones)
            pairs = (("sgd_opt_base_learning_rate", p.peak_lr), ("sgd_opt_end_learning_rate", p.end_lr),
                     ("sgd_opt_learning_rate_decay_poly_power", power),
                     ("sgd_opt_learning_rate_decay_steps", decay_steps),
                     ("sgd_opt_weight_decay", p.weight_decay), ("sgd_opt_momentum", p.momentum),
                     (c.OPT_LR_WARMUP_EPOCHS, warmup_epochs))
        for key, value in pairs:
            self.log.event(key, value)
        self.log.event("label_smoothing", p.label_smoothing)

    def run_start(self, first_epoch: int, epoch_count: float) -> None:
        self.log.end(self.c.INIT_STOP)
        self.log.start(self.c.RUN_START)
        self.block_start(first_epoch, epoch_count)

    def block_start(self, first_epoch: int, epoch_count: float) -> None:
        self._block = {self.c.FIRST_EPOCH_NUM: first_epoch, self.c.EPOCH_COUNT: max(1, round(epoch_count))}
        self.log.start(self.c.BLOCK_START, metadata=self._block)

    def evaluation(self, epoch: int, top1: float, more_blocks: float | None) -> None:
        """Close the current block, log the evaluation, and open the next block if any."""
        c = self.c
        self.log.end(c.BLOCK_STOP, metadata=self._block)
        self.log.start(c.EVAL_START, metadata={c.EPOCH_NUM: epoch})
        self.log.event(c.EVAL_ACCURACY, top1, metadata={c.EPOCH_NUM: epoch})
        self.log.end(c.EVAL_STOP, metadata={c.EPOCH_NUM: epoch})
        if more_blocks:
            self.block_start(epoch + 1, more_blocks)

    def run_stop(self, success: bool) -> None:
        c = self.c
        self.log.end(c.RUN_STOP, metadata={c.STATUS: c.SUCCESS if success else c.ABORTED})
