"""Where a training step's time goes, op by op: hvdtrain's step or the Keras baseline's.

Two views of the same step (ResNet-50, 224 px, batch 32, one process, synthetic input):

1. TensorFlow's profiler: time per op type on TF's compute threads, per step. Ops named
   ``_MklNative*`` run oneDNN kernels; the rest (Relu, ReluGrad, AddN, AddV2, Cast, Mul, ...) run
   TensorFlow's own (Eigen) kernels. With inter-op parallelism the times of concurrent ops overlap,
   so their sum can exceed the step.
2. oneDNN's verbose mode (``ONEDNN_VERBOSE=profile_exec``, with timestamps): per step, the wall
   time, the time inside oneDNN primitives and the rest; and per primitive kind the kernel
   (with its ISA: ``avx10_1_512_amx`` = AMX tiles, ``avx512_core_bf16`` = AVX512_BF16), the
   direction and the data type, so a fall-back to fp32 or to a plain-AVX kernel shows.

    python bench/tools/step_profile.py [--impl hvdtrain|keras] [--precision bf16|fp32]
                                       [--inter N] [--steps 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STEM = "_ic3oc64_"  # the stem convolution's problem: its forward pass starts every step


def trace_ops(impl: str, precision: str, inter: int | None, steps: int) -> None:
    """Run the step in this process under TensorFlow's profiler and print time per op type."""
    from hvdtrain.cluster import runtime
    from hvdtrain.perf.bench import BenchConfig, _input, _network, _training_step
    from hvdtrain.training.config import FaultFlags

    cfg = BenchConfig(impl=impl)
    cfg.net.model, cfg.net.image_size, cfg.net.precision = "resnet50", 224, precision
    cfg.threads.num_inter_threads = inter
    rt = runtime.start(cfg.threads, precision, FaultFlags().stall_timeout, tf_defaults=impl == "keras")
    tf = rt.tf
    net, num_classes = _network(rt, cfg)
    batches = _input(rt, cfg, num_classes)
    step, _ = _training_step(rt, cfg, net)
    for _ in range(3):
        float(step(*next(batches))[0])
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            float(step(*next(batches))[0])
        tf.profiler.experimental.stop()
        xplane = next(Path(logdir).rglob("*.xplane.pb"))
        print(op_table(xplane.read_bytes(), steps))


def op_table(raw: bytes, steps: int) -> str:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(raw)
    host = next(p for p in space.planes if p.name == "/host:CPU")
    ms, calls = collections.Counter(), collections.Counter()
    for line in host.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for ev in line.events:
            name = host.event_metadata[ev.metadata_id].name
            if name.startswith(("ThreadpoolListener", "Executor", "Memory")):
                continue
            op_type = name.rsplit(":", 1)[-1]
            ms[op_type] += ev.duration_ps / 1e9 / steps
            calls[op_type] += 1
    total = sum(ms.values())
    onednn = sum(v for k, v in ms.items() if k.startswith("_Mkl"))
    out = [f"TensorFlow ops, ms per step (sum {total:.0f}; oneDNN ops {onednn:.0f}, "
           f"TensorFlow's own {total - onednn:.0f}):"]
    out += [f"  {v:8.1f} ms {calls[k] // steps:5d}x  {k}" for k, v in ms.most_common(20) if v >= 0.5]
    return "\n".join(out)


def onednn_view(impl: str, precision: str, inter: int | None, steps: int) -> None:
    """Run ``hvdtrain bench`` with oneDNN's verbose mode and print its per-step breakdown."""
    cmd = [str(Path(sys.executable).parent / "hvdtrain"), "bench", "--json", "--model", "resnet50",
           "--image-size", "224", "--batch-size", "32", "--steps", str(steps), "--windows", "1",
           "--warmup", "2", "--no-peak", "--precision", precision, "--impl", impl]
    if inter:
        cmd += ["--num-inter-threads", str(inter)]
    env = {**os.environ, "ONEDNN_VERBOSE": "profile_exec", "ONEDNN_VERBOSE_TIMESTAMP": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    print(onednn_table(res.stdout.splitlines()))


def onednn_table(lines: list[str]) -> str:
    steps, current = [], None
    for line in lines:
        f = line.split(",")
        if len(f) < 12 or f[3:5] != ["primitive", "exec"]:
            continue
        start, kind, impl, prop, mds, problem, ms = float(f[2]), f[6], f[7], f[8], f[9], f[-2], float(f[-1])
        if kind == "convolution" and prop == "forward_training" and STEM in problem:
            current = []
            steps.append(current)
        if current is not None:
            current.append((start, kind, impl, prop, mds.split(" ")[0].split(":")[1], ms))
    timed = steps[2:-1]  # the first two are warm-up; the last has no end mark
    if not timed:
        return "oneDNN: too few steps seen (add --steps)"
    walls = [steps[i + 1][0][0] - steps[i][0][0] for i in range(2, len(steps) - 1)]
    busy = [sum(r[-1] for r in s) for s in timed]
    out = [f"oneDNN, per step (median of {len(timed)}): wall {statistics.median(walls):.0f} ms, "
           f"inside oneDNN {statistics.median(busy):.0f} ms, outside "
           f"{statistics.median(w - b for w, b in zip(walls, busy, strict=True)):.0f} ms"]
    ms, calls = collections.Counter(), collections.Counter()
    for s in timed:
        for _, kind, impl, prop, dtype, t in s:
            key = f"{kind:<20} {prop:<17} {dtype:<5} {impl}"
            ms[key] += t / len(timed)
            calls[key] += 1
    out += [f"  {v:8.1f} ms {calls[k] // len(timed):4d}x  {k}" for k, v in ms.most_common()]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", default="hvdtrain", choices=("hvdtrain", "keras"))
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--inter", type=int, default=None, help="inter-op threads (default: the impl's)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--view", choices=("both", "ops", "onednn"), default="both")
    args = ap.parse_args()
    print(f"== {args.impl}, {args.precision}, inter-op threads {args.inter or 'default'}")
    if args.view in ("both", "onednn"):
        onednn_view(args.impl, args.precision, args.inter, args.steps + 3)
    if args.view in ("both", "ops"):
        trace_ops(args.impl, args.precision, args.inter, args.steps)


if __name__ == "__main__":
    main()
