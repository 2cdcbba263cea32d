"""``hvdtrain bench``: throughput the way cluster users measure it, against a baseline.

Train mode times the real training step of ``hvdtrain train`` (``step.make_train_step``: same
model code, optimizer and Horovod path) after warm-up, as the median of several timed windows,
with a breakdown (input wait, step, allreduce of gradient-sized tensors measured on its own) and
the achieved GFLOP/s as a share of this machine's matmul peak measured in the same process.
``--impl keras`` runs the baseline a user would otherwise run: ``tf.keras.applications.ResNet50``
trained by a plain loop with ``hvd.DistributedGradientTape``, TensorFlow's default threading.
Eval mode times inference; prep mode times ``hvdtrain prep`` with one worker and with all.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hvdtrain.cluster import topology
from hvdtrain.cluster.topology import ThreadFlags
from hvdtrain.flags import Validated, flag
from hvdtrain.perf import spread
from hvdtrain.training.config import COMPRESSIONS, FaultFlags, ModelFlags

IMPLS = ("hvdtrain", "keras")
MODES = ("train", "eval", "prep", "nodes")


@dataclass
class BenchConfig(Validated):
    """`hvdtrain bench`: the network flags are train's own (``ModelFlags``), so a bench measures
    what a training run with the same flags would run."""

    mode: str = "train"           # set by --eval / --prep
    impl: str = flag("hvdtrain", "--impl", choices=IMPLS,
                     help="hvdtrain | keras (the tf.keras.applications ResNet50 + "
                          "DistributedGradientTape baseline).")
    net: ModelFlags = field(default_factory=ModelFlags)
    batch_size: int = flag(32, "--batch-size", low=1, help="Batch PER RANK.")
    input: str = flag("synthetic", "--input",
                      help="'synthetic', or a prep output dir (real TFRecords); with --prep, a raw "
                           "tree (default: synthetic 500x375 JPEGs).")
    manifest: Path | None = flag(None, "--manifest",
                                 help="The --input data set's manifest.json, where it is not in the "
                                      "data dir.")
    gradient_compression: str = flag("none", "--gradient-compression", choices=COMPRESSIONS,
                                     help="none | fp16 (what the gradients cross the network as).")
    steps: int = flag(5, "--steps", low=1, help="Steps per timed window.")
    windows: int = flag(3, "--windows", low=1, help="Timed windows; the median is reported.")
    warmup: int = flag(3, "--warmup", help="Untimed steps first (graph tracing).")
    peak: bool = flag(True, "--peak/--no-peak", help="Also measure the matmul peak (fp32 and bf16).")
    prep_images: int = flag(1000, "--prep-images", help="Synthetic images for --prep.")
    alone: bool = flag(True, "--alone/--no-alone",
                       help="With --nodes: also time each host alone, in turn (hosts x steps x a step).")
    out: Path | None = flag(None, "--out", help="With --nodes: write the result here (JSON), for "
                                                "`hvdtrain plan --from-bench`.")
    export: Path | None = flag(None, "--export",
                               help="With --eval: time every form and version of this export dir "
                                    "beside the checkpoint it came from.")
    threads: ThreadFlags = field(default_factory=ThreadFlags)

    def check(self) -> None:
        from hvdtrain.errors import ConfigError

        if self.mode not in MODES:
            raise ConfigError(f"--mode {self.mode}: choose one of {', '.join(MODES)}")
        if self.impl == "keras" and (self.net.model != "resnet50" or self.mode != "train"):
            raise ConfigError("--impl keras is the ResNet-50 training baseline only")
        if self.export is not None and self.mode != "eval":
            raise ConfigError("--export times inference: add --eval")


def run_bench(cfg: BenchConfig) -> dict:
    cfg.check()
    if cfg.mode == "prep":
        return bench_prep(cfg)
    if cfg.export is not None:
        from hvdtrain.serving.speed import bench_export

        return bench_export(cfg)
    from hvdtrain.cluster import runtime

    rt = runtime.start(cfg.threads, cfg.net.precision, FaultFlags().stall_timeout,
                       tf_defaults=cfg.impl == "keras")
    tf = rt.tf
    result = {"config": {k: v for k, v in asdict(cfg).items() if k != "threads"},
              "num_ranks": rt.size, "threads": rt.threads.describe() if rt.threads else "TF defaults",
              "communication": rt.comm or "Horovod's and MPI's defaults", "onednn": rt.onednn,
              "machine": machine_summary()}
    if cfg.peak:
        result["peak_gflops"] = {"fp32": matmul_gflops(tf, tf.float32),  # bf16: None where it
                                 "bf16": matmul_gflops(tf, tf.bfloat16)  # would abort
                                 if topology.bf16_supported() else None}
    net, num_classes = _network(rt, cfg)
    batches = _input(rt, cfg, num_classes)
    if cfg.mode == "nodes":
        from hvdtrain.perf.health import run_health

        return {"mode": "nodes", **run_health(rt, cfg, net, batches)}
    if cfg.mode == "eval":
        step = tf.function(lambda images, labels: tf.reduce_sum(
            tf.cast(net(images, training=False), tf.float32)))
        flops_per_image = forward_flops(net)
        timing = _time_steps(rt, cfg, batches, step, sync=lambda out: float(out))
    else:
        step, opt_variables = _training_step(rt, cfg, net)
        rt.hvd.broadcast_variables(net.variables + opt_variables, root_rank=0)
        flops_per_image = 3 * forward_flops(net)
        timing = _time_steps(rt, cfg, batches, step, sync=lambda out: float(out[0]))
        timing["allreduce_ms_per_step"] = round(1e3 * allreduce_seconds(rt, net), 2)
    per_rank = timing["images_per_second_per_rank"]
    result.update(timing)
    result["images_per_second"] = round(per_rank * rt.size, 2)
    result["gflops_per_image"] = round(flops_per_image / 1e9, 2)
    result["achieved_gflops_per_rank"] = round(per_rank * flops_per_image / 1e9, 1)
    if cfg.peak:
        peak = result["peak_gflops"]["fp32" if cfg.net.precision == "fp32" else "bf16"]
        if peak:
            result["share_of_peak"] = round(result["achieved_gflops_per_rank"] / peak, 3)
    return result


def _network(rt, cfg: BenchConfig):
    tf = rt.tf
    num_classes = 1000
    if cfg.input != "synthetic":
        from hvdtrain.data import manifest

        num_classes = manifest.load(cfg.input, cfg.manifest).num_classes
    if cfg.impl == "keras":
        net = tf.keras.applications.ResNet50(weights=None, classes=num_classes,
                                             input_shape=(cfg.net.image_size, cfg.net.image_size, 3),
                                             classifier_activation=None)
    else:
        from hvdtrain.engine.model import build_resnet

        net = build_resnet(cfg.net.model, num_classes, cfg.net.image_size)
    return net, num_classes


def _training_step(rt, cfg: BenchConfig, net):
    """(step, optimizer variables): hvdtrain's own optimizer on the seed's ImageNet plan at this
    global batch, or the baseline's plain SGD."""
    tf, hvd = rt.tf, rt.hvd
    if cfg.impl == "hvdtrain":
        from hvdtrain.engine.optim import make_optimizer
        from hvdtrain.engine.step import make_train_step
        from hvdtrain.training.config import imagenet_plan

        optim = make_optimizer(imagenet_plan(cfg.batch_size * rt.size, rt.size), net)
        return make_train_step(rt, net, optim, compression=cfg.gradient_compression), optim.variables

    opt = tf.keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    opt.build(net.trainable_variables)

    @tf.function
    def baseline_step(images, labels):  # Horovod's synthetic-benchmark loop, as users write it
        with tf.GradientTape() as tape:
            logits = tf.cast(net(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return (loss,)

    return baseline_step, opt.variables


def _input(rt, cfg: BenchConfig, num_classes: int):
    from hvdtrain.data import manifest
    from hvdtrain.engine import input_pipeline

    if cfg.input == "synthetic":
        ds = input_pipeline.synthetic_dataset(cfg.batch_size, cfg.net.image_size, num_classes)
    elif cfg.mode == "eval":
        man = manifest.load(cfg.input, cfg.manifest)
        ds, _ = input_pipeline.eval_dataset(man, rt.rank, rt.size, cfg.batch_size,
                                            cfg.net.image_size)
        ds = ds.map(lambda images, labels, mask: (images, labels)).repeat()
    else:
        man = manifest.load(cfg.input, cfg.manifest)
        ds = input_pipeline.train_dataset(man, rt.rank, rt.size, cfg.batch_size,
                                          cfg.net.image_size)
    if cfg.net.precision == "bf16" and cfg.input == "synthetic":
        ds = ds.map(lambda images, labels: (rt.tf.cast(images, rt.tf.bfloat16), labels))
    return iter(ds)


def _time_steps(rt, cfg: BenchConfig, batches, step, sync) -> dict:
    for _ in range(cfg.warmup):
        sync(step(*next(batches)))
    rates, waits, steps_s, each = [], [], [], []
    for _ in range(cfg.windows):
        wait = 0.0
        t0 = time.perf_counter()
        for _ in range(cfg.steps):
            t = time.perf_counter()
            images, labels = next(batches)
            wait += time.perf_counter() - t
            sync(step(images, labels))
            each.append(time.perf_counter() - t)
        secs = time.perf_counter() - t0
        rates.append(cfg.steps * cfg.batch_size / secs)
        waits.append(wait / cfg.steps)
        steps_s.append(secs / cfg.steps)
    out = {"images_per_second_per_rank": round(statistics.median(rates), 2),
           "window_rates_per_rank": [round(r, 2) for r in rates],
           "step_ms": round(1e3 * statistics.median(steps_s), 1),
           "input_wait_ms_per_step": round(1e3 * statistics.median(waits), 2),
           "step_seconds": [round(x, 5) for x in each]}  # every timed step: the spread's samples
    if len(each) >= 2:
        out["step_spread"] = spread.summarize(each)
    return out


def matmul_gflops(tf, dtype, n: int = 4096, reps: int = 5) -> float:
    """This process's dense matmul rate: the ceiling any convolution can approach."""
    a = tf.cast(tf.random.stateless_normal([n, n], seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal([n, n], seed=(3, 4)), dtype)
    mm = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
    float(mm(a, b))
    t0 = time.perf_counter()
    for _ in range(reps):
        float(mm(a, b))
    return round(2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9, 1)


def allreduce_seconds(rt, net, reps: int = 5) -> float:
    """Time of one grouped allreduce of tensors shaped like the gradients (the comm. share)."""
    tf, hvd = rt.tf, rt.hvd
    grads = [tf.zeros_like(v) for v in net.trainable_variables]
    reduce = tf.function(lambda g: hvd.grouped_allreduce(g, op=hvd.Average))
    [t.numpy() for t in reduce(grads)[:1]]
    t0 = time.perf_counter()
    for _ in range(reps):
        out = reduce(grads)
        out[0].numpy()
    return (time.perf_counter() - t0) / reps


def forward_flops(net) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers for one image."""
    import tensorflow as tf

    total = 0
    for layer in net.layers:
        if isinstance(layer, tf.keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += 2 * kh * kw * cin * cout * h * w
        elif isinstance(layer, tf.keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def machine_summary() -> dict:
    import os

    from hvdtrain.perf.info import cpu_summary

    model, isa = cpu_summary()
    return {"cpu": model, "isa": isa, "cores": os.cpu_count()}


# ------------------------------------------------------------------------------------- prep
def bench_prep(cfg: BenchConfig) -> dict:
    """Prep images/s with 1 worker and with all cores, on real or synthetic ImageNet-sized JPEGs."""
    from hvdtrain.data.demo_data import write_synthetic_tree
    from hvdtrain.data.prep import PrepConfig, run_prep

    with tempfile.TemporaryDirectory(prefix="hvdtrain-bench-prep-") as tmp:
        raw = Path(cfg.input) if cfg.input != "synthetic" else Path(tmp) / "raw"
        if cfg.input == "synthetic":
            write_synthetic_tree(raw, cfg.prep_images)
        n = sum(1 for p in raw.rglob("*") if p.is_file() and p.suffix.upper() == ".JPEG")
        rates = {}
        all_workers = topology.cores_per_rank()
        for workers in sorted({1, all_workers}):
            t0 = time.perf_counter()
            run_prep(PrepConfig(raw, Path(tmp) / f"out-{workers}", train_shards=max(1, 4 * all_workers),
                                validation_shards=max(1, all_workers), workers=workers, progress=False),
                     log=lambda *_: None)
            rates[workers] = n / (time.perf_counter() - t0)
    one, full = rates[1], rates[all_workers]
    return {"config": {k: v for k, v in asdict(cfg).items() if k != "threads"},
            "machine": machine_summary(), "images": n,
            "images_per_second": round(full, 1),
            "images_per_second_1_worker": round(one, 1),
            "workers": all_workers,
            "scaling_efficiency": round(full / (all_workers * one), 3)}
