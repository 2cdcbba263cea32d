"""Scaling on the simulated cluster, measured against `hvdtrain plan`'s prediction (root only).

2 nodes x 1 rank x 1 core against 1 node x 1 rank x 1 core, the same per-rank batch, ResNet-50 at
224 px (`hvdtrain bench`, synthetic input). The nodes are network namespaces with capped links
(tests/cluster/simcluster.py). Each row caps the link so that the ratio of communication to
computation in one step equals a real cluster's:

    ratio = ideal allreduce time of the gradients (2 nodes: bytes / link rate) / compute time of
            one step (per-node batch / node images/s)

    cap   = gradient bytes / (ratio x this node's compute time per step)

Our node is ~100x slower than a real one and its batch smaller, so the cap follows from the ratio,
not from the real link rate. Then the levers (compression, fusion threshold, cycle time, per-rank
batch) at the rows where the network matters. Prints one table; writes bench/results/scaling-*.json.

    python bench/scaling.py [--batch 32] [--steps 2] [--windows 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from simcluster import Cluster  # noqa: E402

from hvdtrain.scaling import RESNET50_PARAMS, Job, predict  # noqa: E402
from hvdtrain.world import mpirun_command  # noqa: E402

GRADIENT_BYTES = RESNET50_PARAMS * 4
ROWS = [  # the real cluster: node images/s, per-node batch, link Gb/s
    ("seed: Skylake 8160 2S, Omni-Path 100 Gb/s", 79.1, 96, 100),  # 16,400 / (256 x 81%); 2 x 48
    ("Sapphire Rapids 2S bf16, 100 Gb/s Ethernet", 540.0, 256, 100),  # MLPerf v3.0 class
    ("Sapphire Rapids 2S bf16, 25 Gb/s Ethernet", 540.0, 256, 25),
    ("Sapphire Rapids 2S bf16, 10 Gb/s Ethernet", 540.0, 256, 10),
]
LEVER_ROWS = (2, 3)  # where the network costs something
LEVERS = [  # name, bench flags, environment
    ("gradient compression fp16", ["--gradient-compression", "fp16"], {}),
    ("no tensor fusion (HOROVOD_FUSION_THRESHOLD=0)", [], {"HOROVOD_FUSION_THRESHOLD": "0"}),
    ("fusion 128 MB", [], {"HOROVOD_FUSION_THRESHOLD": str(128 << 20)}),
    ("cycle time 10 ms (HOROVOD_CYCLE_TIME=10)", [], {"HOROVOD_CYCLE_TIME": "10"}),
    ("per-rank batch x2", ["BATCHx2"], {}),
]
HOROVOD_VARS = ("HOROVOD_FUSION_THRESHOLD", "HOROVOD_CYCLE_TIME", "HOROVOD_TIMELINE")


def bench_cmd(batch: int, steps: int, windows: int, extra=()) -> list[str]:
    hvd = str(Path(sys.executable).parent / "hvdtrain")
    args = [hvd, "bench", "--json", "--model", "resnet50", "--image-size", "224", "--batch-size",
            str(batch), "--steps", str(steps), "--windows", str(windows), "--warmup", "1",
            "--no-peak", "--num-intra-threads", "1", "--num-inter-threads", "1", *extra]
    # one core per rank: rank r on core r (every node sees the same two cores)
    return ["sh", "-c", 'exec taskset -c "${OMPI_COMM_WORLD_RANK:-0}" "$@"', "rank", *args]


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON in the output:\n{text[-3000:]}")


def one_node(batch: int, steps: int, windows: int) -> dict:
    import subprocess

    res = subprocess.run(bench_cmd(batch, steps, windows), capture_output=True, text=True, timeout=1800)
    if res.returncode:
        raise RuntimeError(res.stdout[-2000:] + res.stderr[-2000:])
    return last_json(res.stdout)


def two_nodes(cluster: Cluster, batch: int, steps: int, windows: int, extra=(), env=None) -> dict:
    env = env or {}
    forward = [x for v in HOROVOD_VARS if v in env for x in ("-x", v)]
    cmd = cluster.on_head(*mpirun_command(2, extra=("--host", "n1,n2", *forward)),
                          *bench_cmd(batch, steps, windows, extra))
    before = [cluster.counters(n) for n in cluster.nodes]
    t0 = time.perf_counter()
    res = cluster.run(cmd, timeout=3600, **env)
    if res.returncode:
        raise RuntimeError(res.stdout[-3000:] + res.stderr[-3000:])
    after = [cluster.counters(n) for n in cluster.nodes]
    out = last_json(res.stdout)
    # allreduces: warm-up + timed steps + the bench's own allreduce timing (1 + 5)
    allreduces = 1 + steps * windows + 6
    tx = after[0]["tx"] - before[0]["tx"]
    # minus the start's broadcast of weights and momentum (~2x the gradient bytes)
    out["bytes_per_step_n1_tx"] = (tx - 2 * GRADIENT_BYTES) / allreduces
    out["seconds"] = time.perf_counter() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="rows only, no levers")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()

    base = one_node(a.batch, a.steps, a.windows)
    r1 = base["images_per_second"]
    compute = a.batch / r1
    print(f"1 node x 1 rank x 1 core: {r1:.3f} images/s, {compute:.2f} s/step (batch {a.batch})", flush=True)
    rows = []
    cluster = Cluster(2, ROOT / "build" / "scaling-cluster").up()
    try:
        for i, (name, node_rate, node_batch, gbps) in enumerate(ROWS):
            ratio = (GRADIENT_BYTES / (gbps * 1e9 / 8)) / (node_batch / node_rate)
            cap_bytes = GRADIENT_BYTES / (ratio * compute)
            cap_kbit = int(cap_bytes * 8 / 1e3)
            cluster.cap(f"{cap_kbit}kbit")
            runs = [("as is", [], {})] + (LEVERS if i in LEVER_ROWS and not a.quick else [])
            for lever, extra, env in runs:
                batch = a.batch * 2 if "BATCHx2" in extra else a.batch
                extra = [x for x in extra if x != "BATCHx2"]
                m = two_nodes(cluster, batch, a.steps, a.windows, extra, env)
                compression = extra[1] if extra[:1] == ["--gradient-compression"] else "none"
                p = predict(Job(2, 1, 2 * batch, r1, link_gbps=cap_kbit / 1e6, latency_us=50,
                                compression=compression))
                eff = m["images_per_second"] / (2 * r1)
                row = {"row": name, "lever": lever, "real_ratio": ratio, "cap_mbit": cap_kbit / 1e3,
                       "sim_ratio": (GRADIENT_BYTES / (cap_kbit * 1e3 / 8)) / compute,
                       "measured_images_per_second": m["images_per_second"], "efficiency": eff,
                       "predicted_images_per_second": p.images_per_second,
                       "predicted_efficiency": p.scaling_efficiency,
                       "allreduce_ms_alone": m.get("allreduce_ms_per_step"),
                       "predicted_allreduce_ms": p.allreduce_seconds * 1e3,
                       "step_ms": m["step_ms"], "bytes_per_step": m["bytes_per_step_n1_tx"],
                       "ring_bytes_per_step": p.bytes_per_node_link}
                rows.append(row)
                print(f"{name} | {lever} | ratio {ratio:.4f} -> cap {cap_kbit / 1e3:,.0f} Mbit/s | "
                      f"{m['images_per_second']:.3f} images/s, efficiency {eff:.1%} | predicted "
                      f"{p.images_per_second:.3f} ({p.scaling_efficiency:.1%}) | allreduce alone "
                      f"{m.get('allreduce_ms_per_step')} ms, model {p.allreduce_seconds * 1e3:.0f} ms | "
                      f"{m['bytes_per_step_n1_tx'] / 1e6:.1f} MB/step out of n1, ring "
                      f"{p.bytes_per_node_link / 1e6:.1f}", flush=True)
    finally:
        cluster.down()
    out = Path(a.out) / f"scaling-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"one_node": base, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
