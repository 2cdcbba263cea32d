"""One run = one config object; the numbers derived from it are computed here and only here.

``make_plan`` turns the flags plus the data set size and rank count into the plan that is printed
before step 1: steps per epoch, warm-up steps, train steps, the LR curve and the optimizer. A flag
left unset takes the recipe's value (``recipes``: ``--recipe surfsara`` by default: 5 warm-up epochs,
90 epochs, peak = base x global_batch/256 / 2, momentum SGD). For ImageNet-1K (1,281,167 images)
at global batch 24,576 the seed's plan is 52.1 steps/epoch, 260 warm-up, 4,680 steps, peak 4.8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hvdtrain.cluster.topology import ThreadFlags
from hvdtrain.errors import ConfigError
from hvdtrain.flags import REQUIRED, Validated, flag
from hvdtrain.training import recipes
from hvdtrain.training.schedule import ALIASES as SCHEDULE_ALIASES
from hvdtrain.training.schedule import POWERS

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
PRECISIONS = ("fp32", "bf16", "bf32")
IMAGENET_TRAIN_IMAGES = recipes.IMAGENET_TRAIN_IMAGES
OPTIMIZERS = ("sgd", "lars")
COMPRESSIONS = ("none", "fp16")  # Horovod 0.28.1's allreduce takes no bfloat16
LR_SCHEDULES = tuple(POWERS)
_REF = recipes.SURFSARA  # the default recipe, whose values the help texts quote


CENTRE_CROP_FRACTION = 0.875  # tensorflow/tpu resnet_preprocessing.py since 2021 (CROP_FRACTION)


def crop_padding_for(image_size: int) -> int:
    """tensorflow/tpu's current centre-crop padding: a fixed 87.5% of the shorter side at every
    size (224 px -> 32, 128 -> 18, 32 -> 5). Its older fixed 32 agrees at 224 px only."""
    return round(image_size * (1 / CENTRE_CROP_FRACTION - 1))


@dataclass
class FaultFlags(Validated):
    """How a run meets stalled ranks and damaged data (train and eval)."""

    stall_timeout: int = flag(60, "--stall-timeout", low=0,
                              help="Seconds without a finished training step before the job stops "
                                   "with an error naming the stalled rank (0 = never).")
    skip_corrupt_shards: bool = flag(False, "--skip-corrupt-shards",
                                     help="Leave out shards whose sha256 differs from the manifest "
                                          "(and say so) instead of stopping.")


@dataclass
class DataFlags(Validated):
    data_dir: Path = flag(REQUIRED, "--data-dir", "--data_dir",
                          help="TFRecord shards: the output of `hvdtrain prep` or `hvdtrain index`.")
    manifest: Path | None = flag(None, "--manifest",
                                 help="The data set's manifest.json, where it is not in --data-dir "
                                      "(e.g. a read-only data set).")


@dataclass
class ModelFlags(Validated):
    model: str = flag("resnet50", "--model", choices=MODELS,
                      help="One of resnet18, resnet34, resnet50, resnet101, resnet152 (ResNet v1.5).")
    image_size: int = flag(224, "--image-size", "--image_size", low=32, help="Input side in pixels.")
    crop_padding: int | None = flag(None, "--crop-padding", low=0,
                                    help="The centre crop (eval, and train when the random crop "
                                         "fails) is image_size/(image_size + P) of the shorter "
                                         "side. Default: tensorflow/tpu's current rule, "
                                         "P = round(image_size/7), i.e. 87.5% at every size "
                                         "(224 px -> 32, 128 -> 18, 32 -> 5).")
    bn_decay: float = flag(0.95, "--bn-decay", low=0, high=1, open_low=True, open_high=True,
                           help="BatchNorm moving-average decay.")
    precision: str = flag("fp32", "--precision", choices=PRECISIONS,
                          help="fp32 | bf16 (mixed, AMX) | bf32 (oneDNN bf16 math).")

    @property
    def centre_crop_padding(self) -> int:
        """The padding in force: --crop-padding, else tpu's rule at this image size."""
        return crop_padding_for(self.image_size) if self.crop_padding is None else self.crop_padding



@dataclass
class OptimizerFlags(Validated):
    """The optimizer and what it applies (``optim``). Unset: the recipe's (``recipes``)."""

    optimizer: str | None = flag(None, "--optimizer", choices=OPTIMIZERS,
                                 help="sgd (momentum SGD) | lars (You et al.; MLPerf's). Default: "
                                      f"the recipe's (surfsara: {_REF.optimizer}, mlperf: lars).")
    lars_eta: float = flag(0.001, "--lars-eta", low=0, open_low=True,
                           help="LARS trust coefficient: a layer's LR is scaled by "
                                "eta*|w|/(|g| + wd*|w|).")
    momentum: float | None = flag(None, "--momentum", low=0, high=1, open_high=True,
                                  help=f"Momentum. Default: the recipe's (surfsara: {_REF.momentum:g}, "
                                       "mlperf: the RCP's).")
    weight_decay: float | None = flag(None, "--weight-decay", low=0,
                                      help="Weight decay on conv/dense kernels: an L2 loss term with "
                                           "sgd, inside the update with lars; never on BN or biases. "
                                           f"Default: the recipe's (surfsara: {_REF.weight_decay:g}, "
                                           "mlperf: the RCP's).")
    label_smoothing: float | None = flag(None, "--label-smoothing", low=0, high=1, open_high=True,
                                         help="Label smoothing of the cross-entropy. Default: the "
                                              f"recipe's (surfsara: {_REF.label_smoothing:g}, "
                                              "mlperf: 0.1).")



@dataclass
class ScheduleFlags(Validated):
    """Batch, length and LR curve; ``make_plan`` turns them into numbers (``schedule`` draws them).
    Unset values come from the recipe (``recipes``)."""

    recipe: str = flag("surfsara", "--recipe", choices=recipes.NAMES, aliases=recipes.ALIASES,
                       help="surfsara (the seed's recipe; `seed` is accepted) | mlperf: where every "
                            "optimizer and schedule flag you leave out comes from. mlperf: LARS, "
                            "label smoothing 0.1, poly2, and the MLPerf RCP table's LR, warm-up, "
                            "momentum, weight decay and epochs for the global batch.")
    lr_schedule: str | None = flag(None, "--lr-schedule", choices=LR_SCHEDULES,
                                   aliases=SCHEDULE_ALIASES,
                                   help="linear (the seed's: linear warm-up, then linear to 0; `seed` "
                                        "is accepted) | poly2 (linear warm-up, then power-2 decay "
                                        "to 1e-4). Default: the recipe's.")

    train_batch_size: int = flag(256, "--train-batch-size", "--train_batch_size", low=1,
                                 help="GLOBAL batch, split evenly over the ranks (seed: 24576).")
    train_steps: int | None = flag(None, "--train-steps", "--train_steps", low=0, open_low=True,
                                   help="Total steps (seed: 4680). Default: epochs x steps/epoch.")
    train_epochs: float | None = flag(None, "--train-epochs", "--train_epochs", low=0, open_low=True,
                                      help="Alternative to --train-steps. Default: the recipe's "
                                           f"(surfsara: {_REF.epochs:g}).")
    warmup_steps: int | None = flag(None, "--warmup-steps", "--warmup_steps", low=0,
                                    help="Linear warm-up steps. Default: --warmup-epochs.")
    warmup_epochs: float | None = flag(None, "--warmup-epochs", low=0,
                                       help="Warm-up length in epochs. Default: the recipe's (surfsara: "
                                            f"{_REF.warmup_epochs:g}).")
    base_lr: float | None = flag(None, "--base-lr", "--base_lr", low=0,
                                 help=f"LR at step 0. Default: the recipe's (surfsara: {_REF.base_lr:g}, "
                                      "mlperf: 0).")
    peak_lr: float | None = flag(None, "--peak-lr", "--peak_lr", low=0, open_low=True,
                                 help="LR after warm-up. Default: the recipe's (surfsara: base x "
                                      "batch/256 / 2; mlperf: the RCP's base LR).")

    def check(self) -> None:
        if self.train_steps is not None and self.train_epochs is not None:
            raise ConfigError("give --train-steps or --train-epochs, not both")


@dataclass
class TrainConfig(Validated):
    """One training run. Every flag of `hvdtrain train` is a field here (``flags``)."""

    data: DataFlags
    model_dir: Path = flag(REQUIRED, "--model-dir", "--model_dir",
                           help="Checkpoints, TensorBoard logs and reports (written by rank 0).")
    net: ModelFlags = field(default_factory=ModelFlags)
    optim: OptimizerFlags = field(default_factory=OptimizerFlags)
    schedule: ScheduleFlags = field(default_factory=ScheduleFlags)
    threads: ThreadFlags = field(default_factory=ThreadFlags)
    faults: FaultFlags = field(default_factory=FaultFlags)
    checkpoint_every_steps: int = flag(1000, "--checkpoint-every-steps", low=1,
                                       help="Rank 0 saves a checkpoint this often (and at the end).")
    checkpoint_every_minutes: float = flag(10.0, "--checkpoint-every-minutes", low=0, open_low=True,
                                           help="Also save when this long has passed since the last "
                                                "save (whichever of this and --checkpoint-every-steps "
                                                "comes first): a time limit or a lost node costs at "
                                                "most this much work.")
    keep_checkpoints: int = flag(5, "--keep-checkpoints", low=1, help="Newest K checkpoints kept.")
    log_every_steps: int = flag(50, "--log-every-steps", low=1, help="Log line cadence.")
    eval_at_end: bool = flag(False, "--eval-at-end", help="Score the validation set at the end.")
    eval_every_epochs: float | None = flag(None, "--eval-every-epochs", low=0, open_low=True,
                                           help="Also score every K epochs (off by default).")
    gradient_compression: str = flag("none", "--gradient-compression", choices=COMPRESSIONS,
                                     help="none | fp16: fp16 sends the gradients in half the bytes "
                                          "(Horovod 0.28.1 cannot allreduce bf16).")
    target_accuracy: float | None = flag(None, "--target-accuracy", low=0, high=1, open_low=True,
                                         help="Stop at the first evaluation with top-1 >= A (with "
                                              "--eval-every-epochs; MLPerf ResNet-50: 0.759); the "
                                              "report gives epochs and time to it.")
    eval_batch_size: int = flag(200, "--eval-batch-size", "--eval_batch_size",
                                low=1, help="Per-rank batch for evaluation.")
    min_crop_area: float = flag(0.08, "--min-crop-area", low=0, high=1, open_low=True,
                                help="Smallest random crop, as a share of the image "
                                     "(tensorflow/tpu: 0.08).")
    random_flip: bool = flag(True, "--random-flip/--no-random-flip",
                             help="Random left-right flips in training.")
    seed: int = flag(0, "--seed", help="Seed of the initial weights, shuffle and augmentation.")
    max_bad_steps: int = flag(0, "--max-bad-steps", low=0,
                              help="Steps with non-finite loss/gradients to skip before stopping "
                                   "(0: stop at the first).")

    @property
    def data_dir(self) -> Path:
        return self.data.data_dir

    def check(self) -> None:
        self.schedule.check()
        if self.target_accuracy is not None and not self.eval_every_epochs:
            raise ConfigError("--target-accuracy needs --eval-every-epochs (when to evaluate)")


@dataclass
class EvalConfig(Validated):
    """`hvdtrain eval`: one checkpoint scored on every validation image once."""

    data: DataFlags
    model_dir: Path | None = flag(None, "--model-dir", "--model_dir",
                                  help="Model dir of a `hvdtrain train` run (eval_results.json goes "
                                       "here). Required unless --export is given.")
    checkpoint: Path | None = flag(None, "--checkpoint",
                                   help="A checkpoint directory (default: the newest valid one).")
    eval_batch_size: int = flag(200, "--eval-batch-size", "--eval_batch_size",
                                low=1, help="Per-rank batch (seed: 200).")
    precision: str | None = flag(None, "--precision", choices=PRECISIONS,
                                 help="Override the checkpoint's precision.")
    threads: ThreadFlags = field(default_factory=ThreadFlags)
    faults: FaultFlags = field(default_factory=FaultFlags)

    def check(self) -> None:
        if self.model_dir is None:
            raise ConfigError("--model-dir M is required (or --export E, to evaluate an export)")


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
    end_lr: float
    lr_schedule: str
    optimizer: str
    lars_eta: float
    momentum: float
    weight_decay: float
    label_smoothing: float
    recipe: str
    recipe_source: str
    expected_epochs: float | None  # the recipe's mean epochs to its target on ImageNet
    note: str = ""  # a choice the plan made that the flags did not say (printed)

    def describe(self) -> str:
        lars = f" eta {self.lars_eta:g}" if self.optimizer == "lars" else ""
        expect = (f"; RCP mean to {recipes.MLPERF_TARGET:.1%} top-1 on ImageNet: "
                  f"{self.expected_epochs:.1f} epochs" if self.expected_epochs else "")
        return (f"plan: {self.num_train_images:,} train images, global batch {self.global_batch:,} "
                f"= {self.per_rank_batch} x {self.num_ranks} rank(s); "
                f"{self.steps_per_epoch:.1f} steps/epoch; warm-up {self.warmup_steps:,} steps; "
                f"{self.train_steps:,} train steps ({self.epochs:.1f} epochs); "
                f"LR {self.base_lr:g} -> peak {self.peak_lr:g} -> {self.end_lr:g} ({self.lr_schedule})\n"
                f"recipe: {self.recipe}, {self.recipe_source}: {self.optimizer}{lars}, momentum "
                f"{self.momentum:g}, weight decay {self.weight_decay:g}, label smoothing "
                f"{self.label_smoothing:g}{expect}" + (f"\nnote: {self.note}" if self.note else ""))

    def as_dict(self) -> dict:
        return asdict(self)


def make_plan(cfg: ScheduleFlags, num_train_images: int, num_ranks: int,
              opt: OptimizerFlags | None = None) -> Plan:
    """The plan: each flag the user gave, else the recipe's value at this global batch."""
    from hvdtrain.training.schedule import end_lr

    opt = opt or OptimizerFlags()
    g = cfg.train_batch_size
    if g % num_ranks:
        raise ConfigError(f"--train-batch-size {g} (global) does not divide over {num_ranks} ranks; "
                          f"use a multiple of {num_ranks}")
    if num_train_images < g:
        raise ConfigError(f"--train-batch-size {g} is larger than the {num_train_images} training "
                          f"images in the data set")
    r = recipes.recipe(cfg.recipe, g)

    def pick(value, default):
        return default if value is None else value

    spe = num_train_images / g
    whole = max(1, math.floor(spe))
    steps = cfg.train_steps if cfg.train_steps is not None else \
        max(1, round(pick(cfg.train_epochs, r.epochs) * whole))
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else \
        round(pick(cfg.warmup_epochs, r.warmup_epochs) * whole)
    warmup = max(0, min(warmup, steps - 1))
    base = pick(cfg.base_lr, r.base_lr)
    peak = pick(cfg.peak_lr, r.peak_lr if r.peak_lr is not None else base * g / 256 / 2)
    kind = pick(cfg.lr_schedule, r.lr_schedule)
    note = ""
    if cfg.base_lr is None and warmup and peak < base:
        # The seed scales its peak with the batch (4.8 at 24,576); at a small batch the peak falls
        # below its base 0.1, and a warm-up from the base would lower the LR.
        note = (f"peak LR {peak:g} is below the recipe's base LR {base:g} at global batch {g}: "
                f"the warm-up starts from 0 instead (--base-lr sets it)")
        base = 0.0
    return Plan(num_train_images, num_ranks, g, g // num_ranks, spe, whole, warmup, steps,
                steps * g / num_train_images, base, peak, end_lr(kind), kind,
                pick(opt.optimizer, r.optimizer), opt.lars_eta, pick(opt.momentum, r.momentum),
                pick(opt.weight_decay, r.weight_decay), pick(opt.label_smoothing, r.label_smoothing),
                r.name, r.source, r.expected_epochs, note)


def imagenet_plan(global_batch: int, num_ranks: int, recipe: str = "surfsara") -> Plan:
    """A recipe's plan for ImageNet-1K at this global batch (``bench`` runs its optimizer)."""
    return make_plan(ScheduleFlags(train_batch_size=global_batch, recipe=recipe),
                     IMAGENET_TRAIN_IMAGES, num_ranks)
