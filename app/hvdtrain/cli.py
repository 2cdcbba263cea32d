"""The ``hvdtrain`` command: parse flags, call one library function, turn known errors into a
clear message and a non-zero exit. Both ``--kebab-case`` and the seed's ``--snake_case``
spellings are accepted. Nothing here imports TensorFlow (threads must be set first)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from . import __version__
from .config import ConfigError, ModelFlags, ThreadFlags, TrainConfig

# rich_markup_mode=None: click's plain help wraps every option name in full at 80 columns
# (rich's table truncated the seed's --snake_case aliases) and reads well in a batch job's log.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Train image classifiers to SOTA accuracy in the shortest time on Xeon "
                       "clusters: TensorFlow + Horovod over MPI. Run under `mpirun -np N` to "
                       "distribute train, eval and prep.")


def _fail(msg: str, code: int = 1):
    from . import topology

    where = f" (rank {topology.world_rank()} of {topology.world_size()})" if topology.world_size() > 1 else ""
    typer.echo(f"hvdtrain: error{where}: {msg}", err=True)
    raise typer.Exit(code)


def _known_errors() -> tuple:
    from .checkpoint import CheckpointError
    from .manifest import DataError
    from .prep import PrepError
    from .train import TrainingError
    return (ConfigError, DataError, PrepError, CheckpointError, TrainingError)


def _call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except _known_errors() as exc:
        _fail(str(exc))


# ---------------------------------------------------------------- shared option declarations
IntraOpt = typer.Option(None, "--num-intra-threads", "--num_intra_threads",
                        help="Intra-op threads per rank (seed: 22). Default: this rank's cores.")
InterOpt = typer.Option(None, "--num-inter-threads", "--num_inter_threads",
                        help="Inter-op threads per rank (seed: 2). Default: 2 on >=8 cores, else 1.")
BlocktimeOpt = typer.Option(None, "--kmp-blocktime", "--kmp_blocktime",
                            help="KMP_BLOCKTIME in ms (seed: 1). Default: $KMP_BLOCKTIME or 1.")
AffinityOpt = typer.Option(None, "--kmp-affinity", "--kmp_affinity",
                           help="KMP_AFFINITY. Default: $KMP_AFFINITY or granularity=fine,compact,1,0.")
DataDirOpt = typer.Option(..., "--data-dir", "--data_dir",
                          help="Output of `hvdtrain prep` (TFRecord shards + manifest.json).")
ModelDirOpt = typer.Option(..., "--model-dir", "--model_dir",
                           help="Checkpoints, TensorBoard logs and reports (written by rank 0).")
StallOpt = typer.Option(60, "--stall-timeout",
                        help="Seconds without a finished training step before the job stops with an "
                             "error naming the stalled rank (0 = never).")
SkipCorruptOpt = typer.Option(False, "--skip-corrupt-shards",
                              help="Leave out shards whose sha256 differs from the manifest "
                                   "(and say so) instead of stopping.")


# ------------------------------------------------------------------------------- commands
@app.command("demo-data")
def demo_data(out: Path = typer.Argument(..., metavar="OUT", help="Folder to write the raw tree into."),
              image_size: int = typer.Option(32, "--image-size", "--image_size",
                                             help="Side of the written JPEGs in pixels."),
              validation_fraction: float = typer.Option(0.2, help="Share held out per class."),
              seed: int = typer.Option(0, help="Seed of the train/validation split.")):
    """Write the embedded real data set as a raw ImageNet-style tree.

    scikit-learn's 1,797 real handwritten digits, no download, as OUT/train/<wnid>/*.JPEG,
    OUT/validation/*.JPEG and OUT/validation_labels.txt."""
    from .demo_data import write_demo_data

    try:
        counts = write_demo_data(out, image_size, validation_fraction, seed)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"demo-data: {counts['train']} train + {counts['validation']} validation images, "
               f"{counts['classes']} classes, {image_size}px, in {out}")


@app.command()
def prep(raw_data_dir: Path = typer.Option(..., "--raw-data-dir", "--raw_data_dir",
                                           help="Raw tree: train/<wnid>/* and validation/*."),
         output_dir: Path = typer.Option(..., "--output-dir", "--local-scratch-dir",
                                         "--local_scratch_dir", help="Where shards and manifest go."),
         validation_labels: Path | None = typer.Option(
             None, "--validation-labels", "--validation_labels",
             help="One wnid per line, aligned with sorted validation/* "
                  "(default RAW/validation_labels.txt; not needed with validation/<wnid>/)."),
         train_shards: int = typer.Option(1024, "--train-shards", "--train_shards",
                                          help="Number of training shards."),
         validation_shards: int = typer.Option(128, "--validation-shards", "--validation_shards",
                                               help="Number of validation shards."),
         seed: int = typer.Option(0, help="Seed of the training-list shuffle (mixes classes)."),
         workers: int | None = typer.Option(None, help="Processes per rank. Default: this rank's cores."),
         skip_bad: bool = typer.Option(False, "--skip-bad", "--skip_bad",
                                       help="Skip unreadable images and list them in OUT/skipped.txt."),
         progress: bool = typer.Option(True, help="Show progress.")):
    """Raw JPEG folders to class-shuffled TFRecord shards.

    Writes the tensorflow/tpu imagenet_to_gcs.py format plus manifest.json. Under
    `mpirun -np N` each rank writes a disjoint set of shards."""
    from .prep import PrepConfig, run_prep

    if workers is not None and workers < 1:
        _fail(f"--workers {workers} must be at least 1")
    _call(run_prep, PrepConfig(raw_data_dir, output_dir, validation_labels, train_shards,
                               validation_shards, seed, workers, skip_bad, progress))


@app.command()
def verify(data_dir: Path = typer.Argument(..., metavar="DATA_DIR", help="Output of `hvdtrain prep`.")):
    """Check every shard of a prep output against its manifest.

    Re-reads every shard: counts, sha256, keys and labels against manifest.json.
    Exits 0 only when everything agrees."""
    from .verify import verify_dataset

    problems = _call(verify_dataset, data_dir)
    for p in problems:
        typer.echo(f"verify: {p}", err=True)
    if problems:
        raise typer.Exit(1)


@app.command()
def train(
    data_dir: Path = DataDirOpt, model_dir: Path = ModelDirOpt,
    model: str = typer.Option("resnet50", help="One of resnet18, resnet34, resnet50, resnet101, "
                                               "resnet152 (ResNet v1.5)."),
    image_size: int = typer.Option(224, "--image-size", "--image_size", help="Input side in pixels."),
    train_batch_size: int = typer.Option(256, "--train-batch-size", "--train_batch_size",
                                         help="GLOBAL batch, split evenly over the ranks (seed: 24576)."),
    train_steps: int | None = typer.Option(None, "--train-steps", "--train_steps",
                                           help="Total steps (seed: 4680). Default: epochs x steps/epoch"),
    train_epochs: float | None = typer.Option(None, "--train-epochs", "--train_epochs",
                                                 help="Alternative to --train-steps (default 90)."),
    warmup_steps: int | None = typer.Option(None, "--warmup-steps", "--warmup_steps",
                                               help="Linear warm-up steps. Default: 5 epochs."),
    warmup_epochs: float = typer.Option(5.0, "--warmup-epochs", help="Warm-up length in epochs."),
    base_lr: float = typer.Option(0.1, "--base-lr", "--base_lr", help="LR at step 0 (seed: 0.1)."),
    peak_lr: float | None = typer.Option(None, "--peak-lr", "--peak_lr",
                                            help="LR after warm-up. Default: base x batch/256 / 2."),
    bn_decay: float = typer.Option(0.95, "--bn-decay", help="BatchNorm moving-average decay."),
    weight_decay: float = typer.Option(5e-5, "--weight-decay", help="L2 on conv/dense kernels."),
    precision: str = typer.Option("fp32", help="fp32 | bf16 (mixed, AMX) | bf32 (oneDNN bf16 math)."),
    checkpoint_every_steps: int = typer.Option(1000, "--checkpoint-every-steps",
                                               help="Rank 0 saves a checkpoint this often (and at the end)."),
    log_every_steps: int = typer.Option(50, "--log-every-steps", help="Log line cadence."),
    eval_at_end: bool = typer.Option(False, "--eval-at-end", help="Score the validation set at the end."),
    eval_every_epochs: float | None = typer.Option(None, "--eval-every-epochs",
                                                      help="Also score every K epochs (off by default)."),
    eval_batch_size: int = typer.Option(200, "--eval-batch-size", "--eval_batch_size",
                                        help="Per-rank batch for evaluation."),
    min_crop_area: float = typer.Option(0.08, "--min-crop-area",
                                        help="Smallest random crop, as a share of the image."),
    random_flip: bool = typer.Option(True, "--random-flip/--no-random-flip",
                                     help="Random left-right flips in training."),
    seed: int = typer.Option(0, help="Input shuffle seed."),
    keep_checkpoints: int = typer.Option(5, "--keep-checkpoints", help="Newest K checkpoints kept."),
    max_bad_steps: int = typer.Option(0, "--max-bad-steps",
                                      help="Steps with non-finite loss/gradients to skip before "
                                           "stopping (0: stop at the first)."),
    skip_corrupt_shards: bool = SkipCorruptOpt, stall_timeout: int = StallOpt,
    num_intra_threads: int | None = IntraOpt, num_inter_threads: int | None = InterOpt,
    kmp_blocktime: int | None = BlocktimeOpt, kmp_affinity: str | None = AffinityOpt,
    use_tpu: str = typer.Option("False", "--use-tpu", "--use_tpu",
                                help="Accepted for the seed's command line; only False works."),
):
    """Horovod data-parallel training with the seed's recipe.

    Launch with `mpirun -np N hvdtrain train ...` (or alone for one process)."""
    if use_tpu.strip().lower() not in ("false", "0", "no"):
        _fail(f"--use_tpu={use_tpu}: hvdtrain trains on CPUs; pass --use_tpu=False or leave it out")
    from .train import run_training

    cfg = TrainConfig(
        data_dir, model_dir, ModelFlags(model, image_size, bn_decay, weight_decay, precision),
        ThreadFlags(num_intra_threads, num_inter_threads, kmp_blocktime, kmp_affinity, stall_timeout),
        train_batch_size, train_steps, train_epochs, warmup_epochs, warmup_steps, base_lr, peak_lr,
        0.9, checkpoint_every_steps, log_every_steps, eval_at_end, eval_every_epochs,
        eval_batch_size, min_crop_area, random_flip, seed, keep_checkpoints, max_bad_steps,
        skip_corrupt_shards)
    _call(run_training, cfg)


@app.command("eval")
def eval_cmd(
    data_dir: Path = DataDirOpt, model_dir: Path = ModelDirOpt,
    checkpoint: Path | None = typer.Option(None, help="A checkpoint directory (default: newest valid)."),
    eval_batch_size: int = typer.Option(200, "--eval-batch-size", "--eval_batch_size",
                                        help="Per-rank batch (seed: 200)."),
    precision: str | None = typer.Option(None, help="Override the checkpoint's precision."),
    skip_corrupt_shards: bool = SkipCorruptOpt, stall_timeout: int = StallOpt,
    num_intra_threads: int | None = IntraOpt, num_inter_threads: int | None = InterOpt,
    kmp_blocktime: int | None = BlocktimeOpt, kmp_affinity: str | None = AffinityOpt,
    use_tpu: str = typer.Option("False", "--use-tpu", "--use_tpu", help="Accepted; only False works."),
):
    """Top-1/Top-5 over every validation image, exactly once.

    Runs on 1 process or under mpirun; writes MODEL_DIR/eval_results.json."""
    if use_tpu.strip().lower() not in ("false", "0", "no"):
        _fail(f"--use_tpu={use_tpu}: hvdtrain evaluates on CPUs; pass --use_tpu=False")
    from .evaluate import run_eval

    try:
        _call(run_eval, data_dir, model_dir, checkpoint, eval_batch_size,
              ThreadFlags(num_intra_threads, num_inter_threads, kmp_blocktime, kmp_affinity,
                       stall_timeout), precision, skip_corrupt_shards)
    except ValueError as exc:
        _fail(str(exc))


@app.command()
def bench(
    model: str = typer.Option("resnet50", help="Network (hvdtrain's ResNet family)."),
    image_size: int = typer.Option(224, "--image-size", help="Input side in pixels."),
    batch_size: int = typer.Option(32, "--batch-size", help="Batch PER RANK."),
    precision: str = typer.Option("fp32", help="fp32 | bf16 | bf32."),
    input: str = typer.Option("synthetic", "--input",
                              help="'synthetic', or a prep output dir (real TFRecords); "
                                   "with --prep, a raw tree (default: synthetic 500x375 JPEGs)."),
    steps: int = typer.Option(5, help="Steps per timed window."),
    windows: int = typer.Option(3, help="Timed windows; the median is reported."),
    warmup: int = typer.Option(3, help="Untimed steps first (graph tracing)."),
    impl: str = typer.Option("hvdtrain", help="hvdtrain | keras (the tf.keras.applications "
                                              "ResNet50 + DistributedGradientTape baseline)."),
    eval_mode: bool = typer.Option(False, "--eval", help="Inference throughput instead of training."),
    prep_mode: bool = typer.Option(False, "--prep", help="Prep throughput, 1 worker vs all."),
    prep_images: int = typer.Option(1000, "--prep-images", help="Synthetic images for --prep."),
    peak: bool = typer.Option(True, help="Also measure the matmul peak (fp32 and bf16)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (for scripts)."),
    num_intra_threads: int | None = IntraOpt, num_inter_threads: int | None = InterOpt,
    kmp_blocktime: int | None = BlocktimeOpt, kmp_affinity: str | None = AffinityOpt,
):
    """Throughput of training, --eval inference or --prep.

    The median of timed windows after warm-up, with a step-time breakdown and the share of
    this machine's matmul peak. Works under mpirun (images_per_second is global)."""
    import json

    from .bench import BenchConfig, run_bench

    if eval_mode and prep_mode:
        _fail("--eval and --prep are alternatives")
    mode = "eval" if eval_mode else "prep" if prep_mode else "train"
    cfg = BenchConfig(mode, impl, model, image_size, batch_size, precision, input, steps, windows,
                      warmup, peak, prep_images,
                      ThreadFlags(num_intra_threads, num_inter_threads, kmp_blocktime, kmp_affinity))
    res = _call(run_bench, cfg)
    from . import topology

    if topology.world_rank() != 0:
        return
    if as_json:
        typer.echo(json.dumps(res))
        return
    if mode == "prep":
        typer.echo(f"prep: {res['images']} images: {res['images_per_second_1_worker']:,.1f} images/s "
                   f"with 1 worker, {res['images_per_second']:,.1f} with {res['workers']} "
                   f"(scaling efficiency {res['scaling_efficiency']:.0%})")
        return
    typer.echo(f"{mode} {impl} {model} @{image_size}px batch {batch_size}/rank {precision}, "
               f"{res['num_ranks']} rank(s): {res['images_per_second']:,.2f} images/s global "
               f"(windows {res['window_rates_per_rank']} per rank)")
    typer.echo(f"  step {res['step_ms']} ms: input wait {res['input_wait_ms_per_step']} ms"
               + (f", allreduce {res['allreduce_ms_per_step']} ms (measured alone)"
                  if "allreduce_ms_per_step" in res else ""))
    if "peak_gflops" in res:
        typer.echo(f"  {res['achieved_gflops_per_rank']} GFLOP/s per rank = "
                   f"{res['share_of_peak']:.0%} of the matmul peak (fp32 {res['peak_gflops']['fp32']}, "
                   f"bf16 {res['peak_gflops']['bf16']} GFLOP/s); {res['gflops_per_image']} GFLOP/image")


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="One JSON object instead of a table.")):
    """Versions, CPU ISA and thread plan: run this first in the image.

    TF and oneDNN, Horovod with its built controllers and operations, the MPI, the CPU's ISA
    (AVX-512, BF16, AMX) and the threads this rank would get."""
    import json

    from .info import collect, render

    data = collect()
    typer.echo(json.dumps(data, indent=2) if as_json else render(data))


@app.command()
def version():
    """Print the hvdtrain version."""
    typer.echo(__version__)


def main():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines hide ours
    app(prog_name="hvdtrain")


if __name__ == "__main__":
    sys.exit(main())
