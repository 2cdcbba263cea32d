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

from .flags import REQUIRED, flag

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
PRECISIONS = ("fp32", "bf16", "bf32")
DEFAULT_EPOCHS = 90.0          # the seed
IMAGENET_TRAIN_IMAGES = 1_281_167


class ConfigError(ValueError):
    """A flag value that cannot work; the message names the flag."""


def _positive(*flags: tuple[str, float | None]) -> None:
    for name, v in flags:
        if v is not None and v <= 0:
            raise ConfigError(f"{name} {v} must be positive")


@dataclass
class ThreadFlags:
    """Per-process thread settings, decided before TensorFlow starts (``topology``)."""

    num_intra_threads: int | None = flag(None, "--num-intra-threads", "--num_intra_threads",
                                         help="Intra-op threads per rank (seed: 22). Default: this "
                                              "rank's cores.")
    num_inter_threads: int | None = flag(None, "--num-inter-threads", "--num_inter_threads",
                                         help="Inter-op threads per rank (seed: 2). Default: 2 on "
                                              ">=8 cores, else 1.")
    kmp_blocktime: int | None = flag(None, "--kmp-blocktime", "--kmp_blocktime",
                                     help="KMP_BLOCKTIME in ms (seed: 1). Default: $KMP_BLOCKTIME or 1.")
    kmp_affinity: str | None = flag(None, "--kmp-affinity", "--kmp_affinity",
                                    help="KMP_AFFINITY. Default: $KMP_AFFINITY or "
                                         "granularity=fine,compact,1,0.")


@dataclass
class FaultFlags:
    """How a run meets stalled ranks and damaged data (train and eval)."""

    stall_timeout: int = flag(60, "--stall-timeout",
                              help="Seconds without a finished training step before the job stops "
                                   "with an error naming the stalled rank (0 = never).")
    skip_corrupt_shards: bool = flag(False, "--skip-corrupt-shards",
                                     help="Leave out shards whose sha256 differs from the manifest "
                                          "(and say so) instead of stopping.")


@dataclass
class DataFlags:
    data_dir: Path = flag(REQUIRED, "--data-dir", "--data_dir",
                          help="TFRecord shards: the output of `hvdtrain prep` or `hvdtrain index`.")
    manifest: Path | None = flag(None, "--manifest",
                                 help="The data set's manifest.json, where it is not in --data-dir "
                                      "(e.g. a read-only data set).")


@dataclass
class ModelFlags:
    model: str = flag("resnet50", "--model", help="One of resnet18, resnet34, resnet50, resnet101, "
                                                  "resnet152 (ResNet v1.5).")
    image_size: int = flag(224, "--image-size", "--image_size", help="Input side in pixels.")
    bn_decay: float = flag(0.95, "--bn-decay", help="BatchNorm moving-average decay.")
    precision: str = flag("fp32", "--precision",
                          help="fp32 | bf16 (mixed, AMX) | bf32 (oneDNN bf16 math).")

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
class OptimizerFlags:
    """The optimizer and what it applies (``optim``)."""

    momentum: float = flag(0.9, "--momentum", help="SGD momentum.")
    weight_decay: float = flag(5e-5, "--weight-decay", help="L2 on conv/dense kernels (seed: 5e-5).")


@dataclass
class ScheduleFlags:
    """Batch, length and LR curve; ``make_plan`` turns them into numbers (``schedule`` draws them)."""

    train_batch_size: int = flag(256, "--train-batch-size", "--train_batch_size",
                                 help="GLOBAL batch, split evenly over the ranks (seed: 24576).")
    train_steps: int | None = flag(None, "--train-steps", "--train_steps",
                                   help="Total steps (seed: 4680). Default: epochs x steps/epoch.")
    train_epochs: float | None = flag(None, "--train-epochs", "--train_epochs",
                                      help=f"Alternative to --train-steps (default {DEFAULT_EPOCHS:g}).")
    warmup_steps: int | None = flag(None, "--warmup-steps", "--warmup_steps",
                                    help="Linear warm-up steps. Default: --warmup-epochs.")
    warmup_epochs: float = flag(5.0, "--warmup-epochs", help="Warm-up length in epochs.")
    base_lr: float = flag(0.1, "--base-lr", "--base_lr", help="LR at step 0 (seed: 0.1).")
    peak_lr: float | None = flag(None, "--peak-lr", "--peak_lr",
                                 help="LR after warm-up. Default: base x batch/256 / 2.")

    def check(self) -> None:
        if self.train_batch_size < 1:
            raise ConfigError(f"--train-batch-size {self.train_batch_size} must be positive")
        if self.train_steps is not None and self.train_epochs is not None:
            raise ConfigError("give --train-steps or --train-epochs, not both")
        _positive(("--train-steps", self.train_steps), ("--train-epochs", self.train_epochs))


@dataclass
class TrainConfig:
    """One training run. Every flag of `hvdtrain train` is a field here (``flags``)."""

    data: DataFlags
    model_dir: Path = flag(REQUIRED, "--model-dir", "--model_dir",
                           help="Checkpoints, TensorBoard logs and reports (written by rank 0).")
    net: ModelFlags = field(default_factory=ModelFlags)
    optim: OptimizerFlags = field(default_factory=OptimizerFlags)
    schedule: ScheduleFlags = field(default_factory=ScheduleFlags)
    threads: ThreadFlags = field(default_factory=ThreadFlags)
    faults: FaultFlags = field(default_factory=FaultFlags)
    checkpoint_every_steps: int = flag(1000, "--checkpoint-every-steps",
                                       help="Rank 0 saves a checkpoint this often (and at the end).")
    keep_checkpoints: int = flag(5, "--keep-checkpoints", help="Newest K checkpoints kept.")
    log_every_steps: int = flag(50, "--log-every-steps", help="Log line cadence.")
    eval_at_end: bool = flag(False, "--eval-at-end", help="Score the validation set at the end.")
    eval_every_epochs: float | None = flag(None, "--eval-every-epochs",
                                           help="Also score every K epochs (off by default).")
    eval_batch_size: int = flag(200, "--eval-batch-size", "--eval_batch_size",
                                help="Per-rank batch for evaluation.")
    min_crop_area: float = flag(0.08, "--min-crop-area",
                                help="Smallest random crop, as a share of the image "
                                     "(tensorflow/tpu: 0.08).")
    random_flip: bool = flag(True, "--random-flip/--no-random-flip",
                             help="Random left-right flips in training.")
    seed: int = flag(0, "--seed", help="Seed of the initial weights, shuffle and augmentation.")
    max_bad_steps: int = flag(0, "--max-bad-steps",
                              help="Steps with non-finite loss/gradients to skip before stopping "
                                   "(0: stop at the first).")

    @property
    def data_dir(self) -> Path:
        return self.data.data_dir

    def check(self) -> None:
        self.net.check()
        self.schedule.check()
        _positive(("--checkpoint-every-steps", self.checkpoint_every_steps),
                  ("--log-every-steps", self.log_every_steps),
                  ("--eval-batch-size", self.eval_batch_size),
                  ("--keep-checkpoints", self.keep_checkpoints))
        if self.max_bad_steps < 0:
            raise ConfigError(f"--max-bad-steps {self.max_bad_steps} must be 0 or more")
        if not 0 < self.min_crop_area <= 1:
            raise ConfigError(f"--min-crop-area {self.min_crop_area} must be in (0, 1]")


@dataclass
class EvalConfig:
    """`hvdtrain eval`: one checkpoint scored on every validation image once."""

    data: DataFlags
    model_dir: Path = flag(REQUIRED, "--model-dir", "--model_dir",
                           help="Model dir of a `hvdtrain train` run (eval_results.json goes here).")
    checkpoint: Path | None = flag(None, "--checkpoint",
                                   help="A checkpoint directory (default: the newest valid one).")
    eval_batch_size: int = flag(200, "--eval-batch-size", "--eval_batch_size",
                                help="Per-rank batch (seed: 200).")
    precision: str | None = flag(None, "--precision", help="Override the checkpoint's precision.")
    threads: ThreadFlags = field(default_factory=ThreadFlags)
    faults: FaultFlags = field(default_factory=FaultFlags)

    def check(self) -> None:
        _positive(("--eval-batch-size", self.eval_batch_size))
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision}: choose one of {', '.join(PRECISIONS)}")


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


def make_plan(cfg: ScheduleFlags, num_train_images: int, num_ranks: int) -> Plan:
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
        steps = max(1, round((cfg.train_epochs if cfg.train_epochs is not None else DEFAULT_EPOCHS) * whole))
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_epochs * whole)
    warmup = max(0, min(warmup, steps - 1))
    peak = cfg.peak_lr if cfg.peak_lr is not None else cfg.base_lr * g / 256 / 2
    return Plan(num_train_images, num_ranks, g, g // num_ranks, spe, whole, warmup, steps,
                steps * g / num_train_images, cfg.base_lr, peak)


def imagenet_plan(global_batch: int, num_ranks: int) -> Plan:
    """The seed's plan for ImageNet-1K at this global batch (what ``bench`` runs the optimizer on)."""
    return make_plan(ScheduleFlags(train_batch_size=global_batch), IMAGENET_TRAIN_IMAGES, num_ranks)
