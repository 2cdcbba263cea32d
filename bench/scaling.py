"""Scaling on the simulated cluster, measured against `hvdtrain plan`'s prediction (root only).

2 nodes x 1 rank x 1 core against 1 node x 1 rank x 1 core, the same per-rank batch, ResNet-50 at
224 px (`hvdtrain bench`, synthetic input). The nodes are network namespaces with capped links
(tests/support/simcluster.py). Each row caps the link so that the ratio of communication to
computation in one step equals a real cluster's:

    ratio = ideal allreduce time of the gradients (2 nodes: bytes / link rate) / compute time of
            one step (per-node batch / node images/s)

    cap   = gradient bytes / (ratio x this node's compute time per step)

Our node is ~100x slower than a real one and its batch smaller, so the cap follows from the ratio,
not from the real link rate.

The 1-node reference runs *beside another node*: both cores run the 1-node bench at once, each
in its own job, and their mean is the node rate. The simulated nodes are cores of one VM, and a
core runs slower while the other is busy (shared cache, memory bandwidth, the hypervisor's
sibling thread: 3.4-3.6 against 3.1-3.2 images/s on a Zen 4 VM, bench/NOTES.md). In the 2-node run
both cores are busy, and on a real cluster a node's speed does not depend on its neighbour's, so
only a reference with both cores busy isolates what the network and Horovod cost. A lone 1-node
run is measured at the start and the end too; the last line says how much lower every efficiency
is against it.

This VM's speed drifts by up to 30% over an hour (the 1-node rate read 2.29, 3.00 and 3.16 images/s
in one session, and 3.2 to 3.8 within 15 minutes in another), so the reference is measured again
after every 2-node run, and each run is compared with the mean of the references either side of
it. A lever that changes the per-rank batch is compared with a reference at its own batch, run
right after it. Every run records the hypervisor's CPU steal.

The prediction is `hvdtrain plan`'s model (hvdtrain/perf/scaling.py) with three numbers measured once,
on the uncapped link, and then held fixed for every capped row and lever: the path rate (how fast
this machine moves an allreduce through the uncapped link: a cap above it changes nothing), the
overlap (the backward pass's share of the step, from Horovod's timeline) and the host cost (how
much longer a 2-node step is than a 1-node step on the uncapped link, as a share of the step:
Horovod's and the kernel's copies on the rank's one core). The row's own 1-node rate is the
model's node rate. The capped rows test the model; they are not fitted. Every 2-node run records
a Horovod timeline, from which the table reports how much allreduce time ran before the backward
pass ended. Last, at the 25 Gb/s row's cap, 2 ranks share each node's core (as the seed's 2 workers
a node did): flat against hierarchical allreduce, against 1 node x 2 ranks beside another such
node. Prints one table; writes bench/results/scaling-*.json.

    python bench/scaling.py [--batch 32] [--steps 2] [--windows 2] [--quick] [--rows 1,2,3,4]
                            [--lever fp16 ...]

Stragglers (``--noise 0,0.1,0.25,0.5``, instead of the rows): at each level a hog pinned to n2's
core is busy for a random share of every 250 ms (uniform in [0, 2 x level]), so n2's steps are
slower and vary. Each level measures n1 and n2 beside each other (1 rank each: the per-step times
of the quiet and the noisy node), then the 2-node job with the same hog (uncapped link), and
compares its efficiency (against n1's rate) with `hvdtrain plan`'s model given those per-step
times: the straggler term (perf/spread.py, by resampling) for n1 and n2's measured samples. The
rest of the step (Horovod's and the kernel's work on the ranks' cores) is measured once, at level
0, and held fixed. Writes bench/results/noise-*.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from support.simcluster import Cluster  # tests/support: run with PYTHONPATH=tests (make bench does)

from hvdtrain.cluster.world import mpirun_command
from hvdtrain.perf import spread
from hvdtrain.perf.scaling import RESNET50_PARAMS, Job, predict
from hvdtrain.perf.timeline import load, overlap

ROOT = Path(__file__).resolve().parents[1]

GRADIENT_BYTES = RESNET50_PARAMS * 4
ROWS = [  # the real cluster: node images/s, per-node batch, link Gb/s
    ("seed: Skylake 8160 2S, Omni-Path 100 Gb/s", 79.1, 96, 100),  # 16,400 / (256 x 81%); 2 x 48
    ("Sapphire Rapids 2S bf16, 100 Gb/s Ethernet", 540.0, 256, 100),  # MLPerf v3.0 class
    ("Sapphire Rapids 2S bf16, 25 Gb/s Ethernet", 540.0, 256, 25),
    ("Sapphire Rapids 2S bf16, 10 Gb/s Ethernet", 540.0, 256, 10),
]
# lever name, bench flags, environment, rows it runs at (where the network costs something)
LEVERS = [
    ("gradient compression fp16", ["--gradient-compression", "fp16"], {}, (2, 3)),
    ("per-rank batch x2", ["BATCHx2"], {}, (2, 3)),
    ("no tensor fusion (HOROVOD_FUSION_THRESHOLD=0)", [], {"HOROVOD_FUSION_THRESHOLD": "0"}, (3,)),
    ("fusion 32 MB (HOROVOD_FUSION_THRESHOLD=32 MB)", [], {"HOROVOD_FUSION_THRESHOLD": str(32 << 20)},
     (2, 3)),
    ("cycle 100 ms (HOROVOD_CYCLE_TIME=100)", [], {"HOROVOD_CYCLE_TIME": "100"}, (2, 3)),
    ("Horovod's 1 ms cycle, MPI busy-polls (the old defaults)", [],
     {"HOROVOD_CYCLE_TIME": "1", "OMPI_MCA_mpi_yield_when_idle": "0"}, (3,)),
]
SHARED_NODE_ROW = 2  # 2 ranks per node, flat against hierarchical allreduce, at this row's cap


def row_cap(row, compute: float) -> tuple[float, int]:
    """(the real cluster's ratio of allreduce to compute time per step, the link cap in kbit/s that
    gives this node, ``compute`` seconds per step, the same ratio)."""
    _, node_rate, node_batch, gbps = row
    ratio = (GRADIENT_BYTES / (gbps * 1e9 / 8)) / (node_batch / node_rate)
    return ratio, int(GRADIENT_BYTES / (ratio * compute) * 8 / 1e3)


def bench_cmd(batch: int, steps: int, windows: int, extra=(), ranks_per_node: int = 1,
              first_core: int = 0) -> list[str]:
    hvd = str(Path(sys.executable).parent / "hvdtrain")
    args = [hvd, "bench", "--json", "--model", "resnet50", "--image-size", "224", "--batch-size",
            str(batch), "--steps", str(steps), "--windows", str(windows), "--warmup", "1",
            "--no-peak", "--num-intra-threads", "1", "--num-inter-threads", "1", *extra]
    # one core per node: the ranks of node k (ranks are placed by node) share core first_core + k
    core = f'$(( {first_core} + ${{OMPI_COMM_WORLD_RANK:-0}} / {ranks_per_node} ))'
    return ["sh", "-c", f'exec taskset -c "{core}" "$@"', "rank", *args]


def last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON in the output:\n{text[-3000:]}")


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs: the hypervisor's share says whether a run was disturbed."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def run_together(jobs: list[tuple[list[str], dict | None]]) -> list[str]:
    """Start every (command, environment) at once; their stdouts, or an error with the output."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for cmd, env in jobs]
    outs = [p.communicate(timeout=3600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        if p.returncode:
            raise RuntimeError(out[-2000:] + err[-2000:])
    return [out for out, _ in outs]


def one_node(batch: int, steps: int, windows: int, beside: bool = True) -> dict:
    """1 node x 1 rank x 1 core. ``beside``: the other core runs the same bench at the same time
    (the reference that matches the 2-node run, where both cores are busy); the rate is the mean."""
    before = cpu_steal()
    outs = run_together([(bench_cmd(batch, steps, windows, first_core=c), None)
                         for c in ((0, 1) if beside else (0,))])
    each = [last_json(out)["images_per_second"] for out in outs]
    return {"images_per_second": statistics.mean(each), "each": each,
            "cpu_steal": steal_share(before, cpu_steal())}


def mpi_job(cluster: Cluster, hosts: tuple[str, ...], ranks_per_node: int, bench: list[str],
            forward=()) -> list[str]:
    """mpirun from the head namespace: ``ranks_per_node`` ranks on each host, placed by node."""
    slots = ",".join(f"{h}:{ranks_per_node}" for h in hosts)
    return cluster.on_head(*mpirun_command(len(hosts) * ranks_per_node,
                                           extra=("--host", slots, "--map-by", "slot", *forward)),
                           *bench)


def two_nodes(cluster: Cluster, workdir: Path, batch: int, steps: int, windows: int, extra=(),
              env=None, ranks_per_node: int = 1, hosts: tuple[str, ...] = ("n1", "n2")) -> dict:
    timeline = workdir / f"timeline-{time.monotonic_ns()}.json"
    env = {**(env or {}), "HOROVOD_TIMELINE": str(timeline)}
    forward = [x for v in env for x in ("-x", v)]  # every setting reaches every rank
    cmd = mpi_job(cluster, hosts, ranks_per_node, bench_cmd(batch, steps, windows, extra, ranks_per_node),
                  forward)
    before, steal = [cluster.counters(n) for n in cluster.nodes], cpu_steal()
    res = cluster.run(cmd, timeout=3600, **env)
    if res.returncode:
        raise RuntimeError(res.stdout[-3000:] + res.stderr[-3000:])
    after = [cluster.counters(n) for n in cluster.nodes]
    out = last_json(res.stdout)
    out["cpu_steal"] = steal_share(steal, cpu_steal())
    # allreduces: warm-up + timed steps + the bench's own allreduce timing (1 + 5)
    allreduces = 1 + steps * windows + 6
    tx = after[0]["tx"] - before[0]["tx"]
    # minus the start's broadcast of weights and momentum (~2x the gradient bytes)
    out["bytes_per_step_n1_tx"] = (tx - 2 * GRADIENT_BYTES) / allreduces
    tl = overlap(load(timeline))["steps"][1:]  # the first step negotiates without Horovod's cache
    out["timeline"] = {k: statistics.median(s[k] for s in tl) for k in tl[0] if k != "step"}
    timeline.unlink()
    return out


def shared_one_node(cluster: Cluster, batch: int, steps: int, windows: int) -> dict:
    """1 node x 2 ranks sharing its core, beside another such node (n1 on core 0, n2 on core 1): the
    reference for 2 ranks per node, as one_node is for 1. ``batch`` is per rank."""
    jobs = [(mpi_job(cluster, (h,), 2, bench_cmd(batch, steps, windows, ranks_per_node=2, first_core=c)),
             cluster.env()) for c, h in enumerate(("n1", "n2"))]
    before = cpu_steal()
    each = [last_json(out)["images_per_second"] for out in run_together(jobs)]
    return {"images_per_second": statistics.mean(each), "each": each,
            "cpu_steal": steal_share(before, cpu_steal())}


# 2 ranks share each node's core (the seed ran 2 workers a node), at the same per-node batch
SHARED_NODE_LEVERS = [("2 ranks/node, flat allreduce", {}),
                      ("2 ranks/node, hierarchical allreduce", {"HOROVOD_HIERARCHICAL_ALLREDUCE": "1"})]


def shared_node(cluster: Cluster, workdir: Path, a, row, compute: float, rows: list) -> None:
    """2 ranks per node: flat ring allreduce across all 4 ranks against Horovod's hierarchical one
    (reduce inside the node, allreduce across nodes between one rank of each, broadcast inside the
    node). The per-node batch stays the same."""
    name = row[0]
    _, cap_kbit = row_cap(row, compute)
    cluster.cap(f"{cap_kbit}kbit")
    batch = a.batch // 2

    def reference(when: str) -> float:
        r = shared_one_node(cluster, batch, a.steps, a.windows)
        print(f"1 node x 2 ranks sharing 1 core, beside another ({when}): "
              f"{' and '.join(f'{x:.3f}' for x in r['each'])} images/s, CPU steal {r['cpu_steal']:.1%}",
              flush=True)
        return r["images_per_second"]

    before = reference("before")
    measured = [(lever, two_nodes(cluster, workdir, batch, a.steps, a.windows, env=env, ranks_per_node=2))
                for lever, env in SHARED_NODE_LEVERS]
    local = (before + reference("after")) / 2
    for lever, m in measured:
        eff = m["images_per_second"] / (2 * local)
        tl = m["timeline"]
        rows.append({"row": name, "lever": lever, "cap_mbit": cap_kbit / 1e3, "one_node": local,
                     "measured_images_per_second": m["images_per_second"], "efficiency": eff,
                     "step_ms": m["step_ms"], "timeline": tl, "bytes_per_step": m["bytes_per_step_n1_tx"],
                     "allreduce_ms_alone": m.get("allreduce_ms_per_step"), "cpu_steal": m["cpu_steal"]})
        print(f"{name} | {lever} | {cap_kbit / 1e3:,.0f} Mbit/s | {m['images_per_second']:.3f} "
              f"({eff:.1%} of 2 x {local:.3f}) | allreduce alone {m.get('allreduce_ms_per_step')} ms | "
              f"{tl['hidden_ms']:.0f} / {tl['allreduce_busy_ms']:.0f} | "
              f"{m['bytes_per_step_n1_tx'] / 1e6:.1f} MB/step out of n1 | {m['cpu_steal']:.1%}", flush=True)


def _args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="rows only, no levers")
    ap.add_argument("--rows", default=",".join(str(i + 1) for i in range(len(ROWS))),
                    help="which rows to measure, 1-based (default: all): e.g. --rows 3")
    ap.add_argument("--lever", action="append", default=None,
                    help="measure only the levers whose name contains this (repeatable; default: all)")
    ap.add_argument("--no-shared-node", action="store_true", help="skip the 2-ranks-per-node runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--noise", default=None,
                    help="straggler rows instead: noise levels on n2, comma-separated (e.g. 0,0.1,0.25,0.5)")
    ap.add_argument("--model", default="resnet50", help="--noise rows: the network (default resnet50)")
    ap.add_argument("--image-size", type=int, default=224, help="--noise rows: its input side")
    a = ap.parse_args()
    if a.noise is not None:
        try:
            a.noise = [float(x) for x in a.noise.split(",")]
        except ValueError:
            ap.error(f"--noise {a.noise!r}: give levels in [0, 0.5], comma-separated")
        if a.noise[0] != 0 or not all(0 <= x <= 0.5 for x in a.noise):
            ap.error("--noise: the first level must be 0 (it measures the rest of the step), all in [0, 0.5]")
    try:
        a.chosen = {int(x) - 1 for x in a.rows.split(",")}
    except ValueError:
        ap.error(f"--rows {a.rows!r}: give row numbers 1-{len(ROWS)}, comma-separated")
    if not a.chosen <= set(range(len(ROWS))):
        ap.error(f"--rows {a.rows!r}: the rows are 1-{len(ROWS)}")
    a.lever = a.lever or [""]
    return a


class References:
    """The 1-node reference, re-measured after every 2-node run (this VM's speed drifts)."""

    def __init__(self, a):
        self.a, self.refs = a, []

    def __call__(self, when: str, batch: int | None = None, beside: bool = True) -> float:
        batch = batch or self.a.batch
        r = one_node(batch, self.a.steps, self.a.windows, beside)
        self.refs.append({"when": when, "batch": batch, "beside": beside, **r})
        print(f"1 node x 1 rank x 1 core, {'beside another' if beside else 'alone'} ({when}): "
              f"{' and '.join(f'{x:.3f}' for x in r['each'])} images/s, "
              f"{batch / r['images_per_second']:.2f} s/step (batch {batch}), "
              f"CPU steal {r['cpu_steal']:.1%}", flush=True)
        return r["images_per_second"]


def calibrate(cluster: Cluster, workdir: Path, a, r_before: float, reference: References, rows: list):
    """The uncapped 2-node run: host cost, path rate and overlap the model is given. Returns
    (the 1-node compute seconds, the reference after it, host share, path Gb/s, overlap)."""
    cluster.uncap()
    free = two_nodes(cluster, workdir, a.batch, a.steps, a.windows)
    r_after = reference("after the uncapped run")
    r1 = (r_before + r_after) / 2
    compute = a.batch / r1
    tl = free["timeline"]
    host_share = max(0.0, free["step_ms"] / 1e3 - compute) / compute
    ov = min(1.0, tl["backward_ms"] / 1e3 / compute)
    path_gbps = GRADIENT_BYTES * 8 / (free["allreduce_ms_per_step"] / 1e3) / 1e9  # 2 ranks: ring = bytes
    eff = free["images_per_second"] / (2 * r1)
    print(f"2 nodes, uncapped link: {free['images_per_second']:.3f} images/s, efficiency {eff:.1%} "
          f"(against {r1:.3f}, the mean of the references either side); allreduce alone "
          f"{free['allreduce_ms_per_step']} ms -> path rate {path_gbps:.2f} Gb/s; host cost "
          f"{host_share:.1%} of a step; backward pass {tl['backward_ms']:.0f} ms of {compute * 1e3:.0f} "
          f"ms -> overlap {ov:.2f}; allreduce busy {tl['allreduce_busy_ms']:.0f} ms/step, "
          f"{tl['hidden_ms']:.0f} ms of it before the backward pass ended", flush=True)
    rows.append({"row": "uncapped", "lever": "as is (calibration)", "efficiency": eff,
                 "measured_images_per_second": free["images_per_second"], "one_node": r1,
                 "host_share": host_share, "path_gbps": path_gbps, "overlap": ov, "timeline": tl,
                 "step_ms": free["step_ms"], "allreduce_ms_alone": free.get("allreduce_ms_per_step"),
                 "bytes_per_step": free["bytes_per_step_n1_tx"], "cpu_steal": free["cpu_steal"]})
    return compute, r_after, host_share, path_gbps, ov


def measure_row(cluster: Cluster, workdir: Path, a, i: int, calib, r_after: float,
                reference: References, rows: list) -> float:
    """Row ``i`` at its link cap, as is and with the chosen levers; returns the last reference."""
    compute, _, host_share, path_gbps, ov = calib
    name = ROWS[i][0]
    ratio, cap_kbit = row_cap(ROWS[i], compute)
    cluster.cap(f"{cap_kbit}kbit")
    runs = [("as is", [], {})] + ([] if a.quick else [
        (n, f, e) for n, f, e, at in LEVERS if i in at and any(x in n for x in a.lever)])
    measured = []
    for lever, flags, env in runs:
        batch = a.batch * 2 if "BATCHx2" in flags else a.batch
        flags = [x for x in flags if x != "BATCHx2"]
        m = two_nodes(cluster, workdir, batch, a.steps, a.windows, flags, env)
        if batch == a.batch:  # the VM drifts within minutes: a reference after every run
            r_before, r_after = r_after, reference(f"row {i + 1}, after {lever}")
            local = (r_before + r_after) / 2  # this run's 1-node rate: the references either side
        else:  # a reference at the lever's own batch, right after it
            local = reference(f"row {i + 1}, after {lever}, batch {batch}", batch)
        measured.append((lever, flags, env, batch, m, local))
    for lever, flags, env, batch, m, local in measured:
        compression = flags[1] if flags[:1] == ["--gradient-compression"] else "none"
        fusion = int(env.get("HOROVOD_FUSION_THRESHOLD", 128 << 20)) / 1e6  # 0: one per tensor
        p = predict(Job(2, 1, 2 * batch, local, link_gbps=min(cap_kbit / 1e6, path_gbps),
                        latency_us=50, compression=compression, fusion_mb=fusion, overlap=ov,
                        host_seconds=host_share * a.batch / local))  # bytes per step, not images
        eff = m["images_per_second"] / (2 * local)
        err = m["images_per_second"] / p.images_per_second - 1
        tl = m["timeline"]
        rows.append({"row": name, "lever": lever, "real_ratio": ratio, "cap_mbit": cap_kbit / 1e3,
                     "sim_ratio": (GRADIENT_BYTES / (cap_kbit * 1e3 / 8)) / compute,
                     "one_node": local, "measured_images_per_second": m["images_per_second"],
                     "efficiency": eff, "predicted_images_per_second": p.images_per_second,
                     "predicted_efficiency": p.scaling_efficiency, "prediction_error": err,
                     "allreduce_ms_alone": m.get("allreduce_ms_per_step"),
                     "predicted_allreduce_ms": p.allreduce_seconds * 1e3, "timeline": tl,
                     "step_ms": m["step_ms"], "step_ms_model": p.step_seconds * 1e3,
                     "compute_ms_one_node": batch / local * 1e3,
                     "bytes_per_step": m["bytes_per_step_n1_tx"],
                     "ring_bytes_per_step": p.bytes_per_node_link, "cpu_steal": m["cpu_steal"]})
        print(f"{name} | {lever} | {ratio:.4f} -> {cap_kbit / 1e3:,.0f} Mbit/s | "
              f"{m['images_per_second']:.3f} ({eff:.1%}) | {p.images_per_second:.3f} "
              f"({p.scaling_efficiency:.1%}, {err:+.1%}) | {m.get('allreduce_ms_per_step')} / "
              f"{p.allreduce_seconds * 1e3:.0f} | {tl['hidden_ms']:.0f} / "
              f"{tl['allreduce_busy_ms']:.0f} | {m['bytes_per_step_n1_tx'] / 1e6:.1f} / "
              f"{p.bytes_per_node_link / 1e6:.1f} | {m['cpu_steal']:.1%}", flush=True)
    return r_after


def summarize(a, alone: list, refs: list, rows: list) -> None:
    beside = [r["images_per_second"] for r in refs if r["beside"] and r["batch"] == a.batch]
    print(f"a core alone: {alone[0]:.3f} (start) and {alone[-1]:.3f} images/s (end); beside another: "
          f"{beside[0]:.3f} and {beside[-1]:.3f}. A busy neighbour costs this VM "
          f"{1 - (beside[0] + beside[-1]) / (alone[0] + alone[-1]):.1%}: against a lone node every "
          f"efficiency above is that much lower", flush=True)
    within = [r for r in rows if r.get("lever") == "as is" and abs(r["prediction_error"]) <= 0.10]
    print(f"prediction within 10% at {len(within)} of {len(a.chosen)} link caps (as is)")
    out = Path(a.out) / f"scaling-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"one_node": refs, "rows": rows}, indent=2))
    print(f"wrote {out}")


HOG = """
import random, sys, time
level, period = float(sys.argv[1]), 0.25
rng = random.Random(7)
while True:
    busy = rng.uniform(0, 2 * level) * period
    end = time.perf_counter() + busy
    while time.perf_counter() < end:
        pass
    time.sleep(period - busy)
"""


def noise_level(cluster: Cluster, workdir: Path, a, level: float) -> dict:
    """n1 and n2 beside each other, then the 2-node job, with n2's hog at ``level``."""
    hog = (subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", HOG, str(level)])
           if level else None)
    extra = ["--model", a.model, "--image-size", str(a.image_size)]
    try:
        outs = run_together([(bench_cmd(a.batch, a.steps, a.windows, extra, first_core=c), None)
                             for c in (0, 1)])
        quiet, noisy = (last_json(out) for out in outs)
        pair = two_nodes(cluster, workdir, a.batch, a.steps, a.windows, extra)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return {"level": level, "quiet": quiet["step_seconds"], "noisy": noisy["step_seconds"],
            "two_nodes": pair["images_per_second"], "two_nodes_step_ms": pair["step_ms"],
            "cpu_steal": pair["cpu_steal"]}


def noise_prediction(a, m: dict, host_seconds: float):
    """(measured efficiency, the model's Prediction) for one noise level's measurements."""
    q_mean = statistics.mean(m["quiet"])
    rate = a.batch / q_mean  # n1's rate beside the noisy n2: the typical node
    job = Job(2, 1, 2 * a.batch, rate, link_gbps=1000.0, latency_us=50, overlap=0.0,
              host_seconds=host_seconds, step_samples=spread.relative(m["quiet"]),
              slow_node_samples=tuple(t / q_mean for t in m["noisy"]))
    return m["two_nodes"] / (2 * rate), predict(job)


def noise_rows(cluster: Cluster, workdir: Path, a) -> list:
    rows, host = [], None
    print("noise | n2 slower by | n2 CV | n1 CV | measured efficiency | predicted | predicted/measured "
          "| stragglers ms | CPU steal", flush=True)
    for level in a.noise:
        m = noise_level(cluster, workdir, a, level)
        if host is None:  # level 0: what the model does not cover (host work, the allreduce), measured
            _, bare = noise_prediction(a, m, 0.0)
            host = max(0.0, 2 * a.batch / m["two_nodes"] - bare.step_seconds)
        eff, p = noise_prediction(a, m, host)
        slower = statistics.mean(m["noisy"]) / statistics.mean(m["quiet"]) - 1
        row = {**m, "n2_slower_by": slower, "n2_cv": spread.summarize(m["noisy"])["cv"],
               "n1_cv": spread.summarize(m["quiet"])["cv"], "efficiency": eff,
               "predicted_efficiency": p.scaling_efficiency, "ratio": p.scaling_efficiency / eff,
               "straggler_ms": p.straggler_seconds * 1e3, "host_ms": host * 1e3,
               "calibration": level == a.noise[0]}
        rows.append(row)
        print(f"{level:g}{' (calibration)' if row['calibration'] else ''} | {slower:+.1%} | "
              f"{row['n2_cv']:.3f} | {row['n1_cv']:.3f} | {eff:.1%} | {p.scaling_efficiency:.1%} | "
              f"{row['ratio']:.3f} | {row['straggler_ms']:.0f} | {m['cpu_steal']:.1%}", flush=True)
    checked = [r for r in rows if not r["calibration"]]
    within = [r for r in checked if abs(r["ratio"] - 1) <= 0.10]
    print(f"prediction within 10% at {len(within)} of {len(checked)} noise levels "
          f"(level 0 measured the host cost, {host * 1e3:.0f} ms a step)", flush=True)
    out = Path(a.out) / f"noise-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: v for k, v in vars(a).items() if k != "chosen"}, "rows": rows},
                              indent=2))
    print(f"wrote {out}")
    return rows


def main() -> int:
    a = _args()
    if a.noise is not None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        workdir = ROOT / "build" / "scaling-cluster"
        cluster = Cluster(2, workdir).up()
        try:
            noise_rows(cluster, workdir, a)
        finally:
            cluster.down()
        return 0
    # a kill runs the finally blocks below: the cluster's namespaces and links go down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reference, rows, workdir = References(a), [], ROOT / "build" / "scaling-cluster"
    alone = [reference("start", beside=False)]
    r_before = reference("start")
    cluster = Cluster(2, workdir).up()
    try:
        calib = calibrate(cluster, workdir, a, r_before, reference, rows)
        print("row | lever | real ratio -> cap | measured images/s (efficiency) | predicted "
              "(efficiency, error) | allreduce alone / model ms | hidden / busy ms | "
              "MB/step out of n1 / ring MB | CPU steal", flush=True)
        r_after = calib[1]
        for i in sorted(a.chosen):
            r_after = measure_row(cluster, workdir, a, i, calib, r_after, reference, rows)
        if not (a.quick or a.no_shared_node) and SHARED_NODE_ROW in a.chosen:
            try:
                shared_node(cluster, workdir, a, ROWS[SHARED_NODE_ROW], calib[0], rows)
            except RuntimeError as exc:  # keep the rows measured so far
                print(f"2 ranks per node: failed: {exc}", flush=True)
        alone.append(reference("end", beside=False))
    finally:
        cluster.down()
    summarize(a, alone, reference.refs, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
