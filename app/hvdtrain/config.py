"""One run = one config object; the numbers derived from it are computed here and only here.

``make_plan`` turns the flags plus the data set size and rank count into the plan that is printed
before step 1: steps per epoch, warm-up steps, train steps and peak LR, using the seed's rules
(5 warm-up epochs, 90 epochs, peak = base x global_batch/256 / 2). For ImageNet-1K (1,281,167
images) at global batch 24,576 it gives 52.1 steps/epoch, 260 warm-up, 4,680 steps, peak 4.8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
PRECISIONS = ("fp32", "bf16", "bf32")


class ConfigError(ValueError):
    """A flag value that cannot work; the message names the flag."""


@dataclass
class ThreadFlags:
    """Per-process runtime settings decided before TensorFlow starts."""

    num_intra_threads: int | None = None
    num_inter_threads: int | None = None
    kmp_blocktime: int | None = None
    kmp_affinity: str | None = None
    stall_timeout: int = 60  # seconds a rank may lag in a collective before the job is shut down


@dataclass
class ModelFlags:
    model: str = "resnet50"
    image_size: int = 224
    bn_decay: float = 0.95
    weight_decay: float = 5e-5
    precision: str = "fp32"

    def check(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"--model {self.model}: choose one of {', '.join(MODELS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision}: choose one of {', '.join(PRECISIONS)}")
        if self.image_size < 32:
            raise ConfigError(f"--image-size {self.image_size} must be at least 32")
        if not 0 < self.bn_decay < 1:
            raise ConfigError(f"--bn-decay {self.bn_decay} must be between 0 and 1")


@dataclass
class TrainConfig:
    data_dir: Path
    model_dir: Path
    net: ModelFlags = field(default_factory=ModelFlags)
    threads: ThreadFlags = field(default_factory=ThreadFlags)
    train_batch_size: int = 256          # global, split evenly over the ranks
    train_steps: int | None = None       # default: train_epochs x whole steps per epoch
    train_epochs: float | None = None    # default 90 (the seed)
    warmup_epochs: float = 5.0
    warmup_steps: int | None = None
    base_lr: float = 0.1
    peak_lr: float | None = None         # default: base_lr x global_batch / 256 / 2
    momentum: float = 0.9
    checkpoint_every_steps: int = 1000
    log_every_steps: int = 50
    eval_at_end: bool = False
    eval_every_epochs: float | None = None
    eval_batch_size: int = 200
    min_crop_area: float = 0.08          # tensorflow/tpu's random-resized-crop range 0.08..1
    random_flip: bool = True
    seed: int = 0
    keep_checkpoints: int = 5            # newest K kept on disk
    max_bad_steps: int = 0               # non-finite steps to skip before stopping
    skip_corrupt_shards: bool = False

    def check(self) -> None:
        self.net.check()
        if self.train_batch_size < 1:
            raise ConfigError(f"--train-batch-size {self.train_batch_size} must be positive")
        if self.train_steps is not None and self.train_epochs is not None:
            raise ConfigError("give --train-steps or --train-epochs, not both")
        for flag, v in (("--train-steps", self.train_steps), ("--train-epochs", self.train_epochs),
                        ("--checkpoint-every-steps", self.checkpoint_every_steps),
                        ("--log-every-steps", self.log_every_steps),
                        ("--eval-batch-size", self.eval_batch_size),
                        ("--keep-checkpoints", self.keep_checkpoints)):
            if v is not None and v <= 0:
                raise ConfigError(f"{flag} {v} must be positive")
        if self.max_bad_steps < 0:
            raise ConfigError(f"--max-bad-steps {self.max_bad_steps} must be 0 or more")
        if not 0 < self.min_crop_area <= 1:
            raise ConfigError(f"--min-crop-area {self.min_crop_area} must be in (0, 1]")


@dataclass(frozen=True)
class Plan:
    """Every derived number of a training run."""

    num_train_images: int
    num_ranks: int
    global_batch: int
    per_rank_batch: int
    steps_per_epoch: float       # images / global batch, as the seed prints it (52.1)
    whole_steps_per_epoch: int   # what warm-up and epoch counts are multiplied by (52)
    warmup_steps: int
    train_steps: int
    epochs: float
    base_lr: float
    peak_lr: float

    def describe(self) -> str:
        return (f"plan: {self.num_train_images:,} train images, global batch {self.global_batch:,} "
                f"= {self.per_rank_batch} x {self.num_ranks} rank(s); "
                f"{self.steps_per_epoch:.1f} steps/epoch; warm-up {self.warmup_steps:,} steps; "
                f"{self.train_steps:,} train steps ({self.epochs:.1f} epochs); "
                f"LR {self.base_lr:g} -> peak {self.peak_lr:g} -> 0")

    def as_dict(self) -> dict:
        return asdict(self)


def make_plan(cfg: TrainConfig, num_train_images: int, num_ranks: int) -> Plan:
    g = cfg.train_batch_size
    if g % num_ranks:
        raise ConfigError(f"--train-batch-size {g} (global) does not divide over {num_ranks} ranks; "
                          f"use a multiple of {num_ranks}")
    if num_train_images < g:
        raise ConfigError(f"--train-batch-size {g} is larger than the {num_train_images} training "
                          f"images in the data set")
    spe = num_train_images / g
    whole = max(1, math.floor(spe))
    if cfg.train_steps is not None:
        steps = cfg.train_steps
    else:
        steps = max(1, round((cfg.train_epochs if cfg.train_epochs is not None else 90.0) * whole))
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * whole)
    warmup = max(0, min(warmup, steps - 1))
    peak = cfg.peak_lr if cfg.peak_lr is not None else cfg.base_lr * g / 256 / 2
    return Plan(num_train_images, num_ranks, g, g // num_ranks, spe, whole, warmup, steps,
                steps * g / num_train_images, cfg.base_lr, peak)
