"""The ``hvdtrain`` command: parse flags, call one library function, turn known errors into a
clear message and a non-zero exit. Both ``--kebab-case`` and the seed's ``--snake_case``
spellings are accepted. Nothing here imports TensorFlow (threads must be set first)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from hvdtrain import __version__
from hvdtrain.data.index import IndexConfig
from hvdtrain.data.prep import PrepConfig
from hvdtrain.errors import HvdtrainError
from hvdtrain.flags import arg, build, command
from hvdtrain.perf.bench import BenchConfig
from hvdtrain.perf.planner import PlanConfig
from hvdtrain.serving.config import ExportConfig, ExportEvalFlags, PredictConfig
from hvdtrain.training.config import EvalConfig, TrainConfig

# rich_markup_mode=None: click's plain help wraps every option name in full at 80 columns
# (rich's table truncated the seed's --snake_case aliases) and reads well in a batch job's log.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Train image classifiers to SOTA accuracy in the shortest time on Xeon "
                       "clusters: TensorFlow + Horovod over MPI. Run under `mpirun -np N` to "
                       "distribute train, eval and prep.")


def _fail(msg: str, code: int = 1):
    from hvdtrain.cluster.stop_signals import EX_TEMPFAIL
    from hvdtrain.cluster.world import world

    w = world()
    where = f" (rank {w.rank} of {w.size})" if w.size > 1 else ""
    what = "stopped" if code == EX_TEMPFAIL else "error"  # saved on a signal: not a failure
    typer.echo(f"hvdtrain: {what}{where}: {msg}", err=True)
    raise typer.Exit(code)


def _build(cls, values: dict):
    """The command's config from its parsed flags; a flag outside its choices or bounds is one
    clear error (``flags.Validated``)."""
    return _call(build, cls, values)


def _call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except HvdtrainError as exc:
        _fail(str(exc), exc.exit_code)


# Options come from the config dataclasses (``flags``): a flag's default and help live there, once.
UseTpu = arg("use_tpu", str, "False", names=("--use-tpu", "--use_tpu"),
             help="Accepted for the seed's command line; only False works.")


def _no_tpu(use_tpu: str, verb: str) -> None:
    if use_tpu.strip().lower() not in ("false", "0", "no"):
        _fail(f"--use_tpu={use_tpu}: hvdtrain {verb} on CPUs; pass --use_tpu=False or leave it out")


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
    from hvdtrain.data.demo_data import write_demo_data

    try:
        counts = write_demo_data(out, image_size, validation_fraction, seed)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"demo-data: {counts['train']} train + {counts['validation']} validation images, "
               f"{counts['classes']} classes, {image_size}px, in {out}")


@command(app, "prep", PrepConfig)
def prep(**values):
    """Raw JPEG folders to class-shuffled TFRecord shards.

    Writes the tensorflow/tpu imagenet_to_gcs.py format plus manifest.json. Under
    `mpirun -np N` each rank writes a disjoint set of shards."""
    from hvdtrain.data.prep import run_prep

    _call(run_prep, _build(PrepConfig, values))


@command(app, "index", IndexConfig, extra=[
    arg("data_dir", Path, ..., argument=True, metavar="DATA_DIR",
        help="TFRecord shards written by another tool (flat, or in train/ and validation/).")])
def index(data_dir: Path, **values):
    """Make a manifest for an existing TFRecord data set, so train, eval and verify accept it.

    Detects tensorflow/tpu imagenet_to_gcs.py, Inception build_imagenet_data.py and TensorFlow
    Datasets imagenet2012 shards from their records and reads each shard once (in parallel;
    across ranks under mpirun) for counts, sha256, labels and synsets. Never writes to the shards."""
    from hvdtrain.data.index import run_index

    _call(run_index, _build(IndexConfig, {**values, "data_dir": data_dir}))


@app.command()
def verify(data_dir: Path = typer.Argument(..., metavar="DATA_DIR",
                                           help="Shards with a manifest: the output of `hvdtrain "
                                                "prep` or of `hvdtrain index`."),
           manifest: Path | None = typer.Option(None, "--manifest",
                                                help="The data set's manifest.json, where it is not "
                                                     "in DATA_DIR.")):
    """Check every shard of a data set (prep's or index's) against its manifest.

    Re-reads every shard: counts, sha256, keys and labels against manifest.json.
    Exits 0 only when everything agrees."""
    from hvdtrain.data.verify import verify_dataset

    problems = _call(verify_dataset, data_dir, manifest)
    for p in problems:
        typer.echo(f"verify: {p}", err=True)
    if problems:
        raise typer.Exit(1)


@command(app, "train", TrainConfig, extra=[UseTpu])
def train(use_tpu: str, **values):
    """Horovod data-parallel training with the seed's recipe.

    Launch with `mpirun -np N hvdtrain train ...` (or alone for one process)."""
    _no_tpu(use_tpu, "trains")
    from hvdtrain.training.train import run_training

    _call(run_training, _build(TrainConfig, values))


@command(app, "eval", EvalConfig, ExportEvalFlags, extra=[UseTpu])
def eval_cmd(use_tpu: str, **values):
    """Top-1/Top-5 over every validation image, exactly once.

    A checkpoint (--model-dir): on 1 process or under mpirun; writes MODEL_DIR/eval_results.json.
    An export (--export E [--format F]): in one process, the same report (nothing written)."""
    _no_tpu(use_tpu, "evaluates")
    exported = _build(ExportEvalFlags, values)
    if exported.export is not None:
        from hvdtrain.serving.evaluate import run_export_eval

        _call(run_export_eval, _build(EvalConfig, values), exported)
        return
    from hvdtrain.training.evaluate import run_eval

    _call(run_eval, _build(EvalConfig, values))


@command(app, "export", ExportConfig)
def export(**values):
    """Export a trained model for serving: TF Serving's layout, ONNX or OpenVINO.

    Builds the network without Horovod, restores the newest valid checkpoint (or --checkpoint) and
    writes OUTPUT_DIR/<version>/ (one higher than any there): a SavedModel whose serving_default
    takes JPEG/PNG bytes (key `input`) as tensorflow/tpu's export does, and predict_tensor takes
    the preprocessed batch; with TF Serving's warm-up file and export.json."""
    from hvdtrain.serving.export import run_export

    _call(run_export, _build(ExportConfig, values))


@command(app, "predict", PredictConfig, extra=[
    arg("images", list[Path], ..., argument=True, metavar="IMAGE_OR_DIR...",
        help="Image files (JPEG, PNG, GIF, BMP) and directories (read recursively)."),
    arg("as_json", bool, False, names=("--json",), help="One JSON object per file.")])
def predict(images: list[Path], as_json: bool, **values):
    """Top-k classes of images, from an export (--export) or a checkpoint (--model-dir).

    A file that is not a readable image is named and the others are still predicted; the exit
    status is 1 when any failed."""
    from hvdtrain.serving.predict import as_json_line, run_predict

    def emit(pred):
        typer.echo(as_json_line(pred) if as_json else pred.line(), err=pred.error is not None and not as_json)

    failed = _call(run_predict, _build(PredictConfig, values), images, emit)
    if failed:
        _fail(f"{failed} of the files named could not be read as images (listed above)")


@command(app, "bench", BenchConfig, extra=[
    arg("eval_mode", bool, False, names=("--eval",), help="Inference throughput instead of training."),
    arg("prep_mode", bool, False, names=("--prep",), help="Prep throughput, 1 worker vs all."),
    arg("nodes_mode", bool, False, names=("--nodes",),
        help="Node health check (under mpirun): every host's training speed, the slow ones named."),
    arg("as_json", bool, False, names=("--json",), help="Print one JSON object (for scripts).")])
def bench(eval_mode: bool, prep_mode: bool, nodes_mode: bool, as_json: bool, **values):
    """Throughput of training, --eval inference, --prep, or every --nodes host's speed.

    The median of timed windows after warm-up, with a step-time breakdown and the share of
    this machine's matmul peak. Works under mpirun (images_per_second is global)."""
    import json

    from hvdtrain.perf.bench import run_bench

    if eval_mode + prep_mode + nodes_mode > 1:
        _fail("--eval, --prep and --nodes are alternatives")
    cfg = _build(BenchConfig, values)
    cfg.mode = "eval" if eval_mode else "prep" if prep_mode else "nodes" if nodes_mode else "train"
    res = _call(run_bench, cfg)
    from hvdtrain.cluster.world import world

    if world().rank != 0:
        return
    if as_json:
        typer.echo(json.dumps(res))
        return
    if res.get("mode") == "eval-export":
        from hvdtrain.serving.speed import render

        typer.echo(render(res))
        return
    if res.get("mode") == "nodes":
        from hvdtrain.perf.health import render

        typer.echo(render(res))
        return
    if cfg.mode == "prep":
        typer.echo(f"prep: {res['images']} images: {res['images_per_second_1_worker']:,.1f} images/s "
                   f"with 1 worker, {res['images_per_second']:,.1f} with {res['workers']} "
                   f"(scaling efficiency {res['scaling_efficiency']:.0%})")
        return
    typer.echo(f"{cfg.mode} {cfg.impl} {cfg.net.model} @{cfg.net.image_size}px batch {cfg.batch_size}/rank "
               f"{cfg.net.precision}, "
               f"{res['num_ranks']} rank(s): {res['images_per_second']:,.2f} images/s global "
               f"(windows {res['window_rates_per_rank']} per rank)")
    if "step_spread" in res:
        sp = res["step_spread"]
        typer.echo(f"  step times: median {sp['median_ms']} ms, CV {sp['cv']}, p99/median "
                   f"{sp['p99_over_median']} over {sp['steps']} steps")
    typer.echo(f"  step {res['step_ms']} ms: input wait {res['input_wait_ms_per_step']} ms"
               + (f", allreduce {res['allreduce_ms_per_step']} ms (measured alone)"
                  if "allreduce_ms_per_step" in res else ""))
    if "peak_gflops" in res:
        bf16 = res["peak_gflops"]["bf16"]
        share = f" = {res['share_of_peak']:.0%} of the matmul peak" if "share_of_peak" in res else ""
        typer.echo(f"  {res['achieved_gflops_per_rank']} GFLOP/s per rank{share} (fp32 "
                   f"{res['peak_gflops']['fp32']}, bf16 "
                   f"{bf16 if bf16 is not None else 'n/a: no bfloat16 kernels here'} GFLOP/s); "
                   f"{res['gflops_per_image']} GFLOP/image")


@app.command()
def report(model_dir: Path = typer.Argument(..., metavar="MODEL_DIR",
                                            help="The --model-dir of a `hvdtrain train` run."),
           as_json: bool = typer.Option(False, "--json", help="One JSON object instead of text.")):
    """Summary of a training run, with MODEL_DIR/curves.png redrawn.

    Recipe, epochs, time-to-train (or to the target), best top-1 and images/s, from
    train_report.json and history.json (which a run in progress keeps up to date)."""
    import json

    from hvdtrain.reporting.report import render, summarize

    s = _call(summarize, model_dir)
    typer.echo(json.dumps(s) if as_json else render(s))


@app.command()
def recipes(global_batch: int = typer.Option(24576, "--global-batch",
                                             help="Global batch (the seed's: 24576)."),
            images: int = typer.Option(1_281_167, "--images", help="Training images (ImageNet-1K).")):
    """The seed's and MLPerf's recipes side by side for one global batch.

    Optimizer, LR curve, epochs and steps of `--recipe seed` and `--recipe mlperf` (MLPerf's
    reference convergence points, interpolated for the batch)."""
    from hvdtrain.reporting.report import compare_recipes

    if global_batch < 1 or images < global_batch:
        _fail(f"--global-batch {global_batch} must be between 1 and --images {images}")
    typer.echo(compare_recipes(global_batch, images))


@command(app, "plan", PlanConfig, extra=[
    arg("as_json", bool, False, names=("--json",), help="One JSON object (for scripts).")])
def plan(as_json: bool, **values):
    """Predict N-node throughput and time-to-train before booking the nodes.

    Step time split into compute, exposed allreduce and input; global images/s and scaling
    efficiency; the recipe's plan and time-to-train. A ring-allreduce cost model (bench/NOTES.md
    compares it with measurements) on one node's rate, given or --measure'd."""
    import json

    from hvdtrain.perf.planner import render_plan, run_plan

    r = _call(run_plan, _build(PlanConfig, values), log=lambda line: typer.echo(line, err=True))
    typer.echo(json.dumps(r) if as_json else render_plan(r))


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="One JSON object instead of a table.")):
    """Versions, CPU ISA and thread plan: run this first in the image.

    TF and oneDNN, Horovod with its built controllers and operations, the MPI, the CPU's ISA
    (AVX-512, BF16, AMX) and the threads this rank would get."""
    import json

    from hvdtrain.perf.info import collect, render

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
