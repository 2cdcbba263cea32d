"""Training recipes: every recipe flag's value when the user does not give it.

``surfsara``: the seed's recipe, Intel/SURFsara's (momentum SGD, 5 warm-up epochs, linear decay, 90 epochs,
peak LR = 0.1 x batch/256 / 2). ``mlperf``: MLPerf's ResNet-50 reference convergence points
(RCPs), read from the ``mlperf-logging`` package's own table (``rcps_resnet.json`` of ruleset
4.0.0): LARS, label smoothing 0.1, poly2 decay after a warm-up from 0, and base LR, warm-up,
momentum, weight decay and schedule length for the global batch, interpolated linearly in
log2(batch) between the two nearest rows. A flag the user gives always wins over the recipe.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from importlib import resources

IMAGENET_TRAIN_IMAGES = 1_281_167
RCP_RULESET = "training_4.0.0"
MLPERF_TARGET = 0.759  # top-1 the RCPs converge to


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str  # sgd | lars
    lr_schedule: str  # linear | poly2 (``schedule``)
    base_lr: float  # LR at step 0
    peak_lr: float | None  # LR after warm-up; None: surfsara's rule, base x batch/256 / 2
    warmup_epochs: float
    epochs: float  # length of the LR schedule
    momentum: float
    weight_decay: float
    label_smoothing: float
    source: str  # where the numbers come from, printed with the plan
    expected_epochs: float | None = None  # RCP: mean epochs to MLPERF_TARGET on ImageNet


SURFSARA = Recipe("surfsara", "sgd", "linear", 0.1, None, 5.0, 90.0, 0.9, 5e-5, 0.0,
                  "the seed's (Intel/SURFsara: 75.2% top-1 in 90 epochs at batch 24,576)")
NAMES = ("surfsara", "mlperf")
ALIASES = {"seed": "surfsara"}  # the name it had while it was the only recipe (`--recipe seed`)


@dataclass(frozen=True)
class RcpRow:
    batch: int
    base_lr: float
    warmup_epochs: float
    momentum: float
    weight_decay: float
    decay_steps: int
    mean_epochs: float

    @property
    def epochs(self) -> float:
        """Schedule length in ImageNet epochs: warm-up + the decay steps at this batch."""
        return self.warmup_epochs + self.decay_steps * self.batch / IMAGENET_TRAIN_IMAGES


def rcp_rows() -> list[RcpRow]:
    """The RCP table of the installed mlperf-logging package, by global batch."""
    path = resources.files("mlperf_logging.rcp_checker") / RCP_RULESET / "rcps_resnet.json"
    rows = []
    for entry in json.loads(path.read_text()).values():
        hp = entry["Hyperparams"]
        runs = entry["Epochs to converge"]
        rows.append(RcpRow(int(entry["BS"]), float(hp["opt_base_learning_rate"]),
                           float(hp["opt_learning_rate_warmup_epochs"]), float(hp["opt_momentum"]),
                           float(hp["opt_weight_decay"]), int(hp["opt_learning_rate_decay_steps"]),
                           sum(runs) / len(runs)))
    return sorted(rows, key=lambda r: r.batch)


def rcp_for(global_batch: int) -> tuple[RcpRow, str]:
    """The RCP hyperparameters at ``global_batch`` and how they were found."""
    rows = rcp_rows()
    exact = [r for r in rows if r.batch == global_batch]
    if exact:
        return exact[0], f"RCP row {global_batch:,}"
    if global_batch < rows[0].batch or global_batch > rows[-1].batch:
        r = rows[0] if global_batch < rows[0].batch else rows[-1]
        side = "below the smallest" if global_batch < rows[0].batch else "above the largest"
        return replace(r, batch=global_batch, decay_steps=round(r.decay_steps * r.batch / global_batch)), \
            f"batch {global_batch:,} is {side} RCP row; row {r.batch:,} used (same epochs)"
    lo = [r for r in rows if r.batch < global_batch][-1]
    hi = next(r for r in rows if r.batch > global_batch)
    t = (math.log2(global_batch) - math.log2(lo.batch)) / (math.log2(hi.batch) - math.log2(lo.batch))

    def mix(a: float, b: float) -> float:
        return a + t * (b - a)

    epochs = mix(lo.epochs, hi.epochs)
    warmup = mix(lo.warmup_epochs, hi.warmup_epochs)
    row = RcpRow(global_batch, mix(lo.base_lr, hi.base_lr), warmup, mix(lo.momentum, hi.momentum),
                 mix(lo.weight_decay, hi.weight_decay),
                 round((epochs - warmup) * IMAGENET_TRAIN_IMAGES / global_batch),
                 mix(lo.mean_epochs, hi.mean_epochs))
    return row, f"RCP rows {lo.batch:,} and {hi.batch:,} interpolated in log2(batch) at t={t:.2f}"


def recipe(name: str, global_batch: int) -> Recipe:
    name = ALIASES.get(name, name)
    if name == "surfsara":
        return SURFSARA
    if name != "mlperf":
        raise ValueError(f"--recipe {name}: choose one of {', '.join(NAMES)}")
    row, how = rcp_for(global_batch)
    return Recipe("mlperf", "lars", "poly2", 0.0, row.base_lr, row.warmup_epochs, row.epochs,
                  row.momentum, row.weight_decay, 0.1,
                  f"MLPerf {RCP_RULESET} ({how})", row.mean_epochs)
