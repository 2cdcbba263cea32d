"""How a run scales across nodes, predicted: one node's measured compute plus a ring-allreduce
cost model (``hvdtrain plan``).

    step      = compute + stragglers + host + exposed allreduce + coordination + exposed input
    compute   = per-rank batch / per-rank rate            (node rate / ranks per node)
    stragglers= compute x (E[slowest of p ranks] / E[slowest of one node's ranks] - 1): a
                synchronous step waits for its slowest rank (``spread``: by resampling the
                measured per-step times), and the slowest node's deficit (--node-spread) on top
    coordination = half a Horovod cycle (the last gradient waits for the next one) + the
                negotiation: a 2 log2(p)-hop tree at the hop latency + 1 us per rank at rank 0
    host      = the communication's own work on the rank's cores (copies, sums, TCP), which no
                overlap hides; 0 unless measured (bench/scaling.py measures it on one core)
    allreduce = buffers x 2(p-1) x latency + 2(p-1)/p x gradient bytes / link rate
    exposed   = max(0, allreduce - overlap x compute)      (overlap: the share of a step's compute
                                                           that allreduces can hide behind: the
                                                           backward pass, where gradients appear)

p is every rank of the job. In a ring laid out node by node only one hop per node crosses the
network, so each node's link carries 2(p-1)/p of the gradient bytes once per step each way, the
same as a hierarchical allreduce; hops inside a node (shared memory) are taken as free. Gradient
bytes are the model's parameters at 4 bytes, 2 with fp16 compression; Horovod fuses them into
buffers of ``fusion_mb``, each paying the ring's 2(p-1) latency hops. A shared file system of
``fs_gbps`` caps the rate at fs_gbps / image bytes (every rank reads its shards from it at once).
The model ignores the allreduce of BN statistics at checkpoints and evaluation and network
contention beyond one link per node; bench/NOTES.md compares it with measurements and with the
seed's cluster.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from hvdtrain.perf import spread

RESNET50_PARAMS = 25_557_032  # trainable parameters of ResNet-50 v1.5 (tensorflow/tpu's count)
# Gradients appear during the backward pass, and Horovod's timeline shows their allreduces running
# while it does (94-99% of the allreduce time before the last gradient), so the backward pass's
# share of the step is the compute an allreduce can hide behind. Measured: bench/NOTES.md,
# "Scaling" (ResNet-50, 224 px: 7.0 s of a 10.7 s step).
OVERLAP = 0.66
RESNET50_TENSORS = 161  # gradient tensors (Horovod's timeline): the buffers when fusion is off
BYTES_PER_PARAM = {"none": 4, "fp16": 2}
CYCLE_MS = 20.0  # HOROVOD_CYCLE_TIME as hvdtrain sets it (cluster/topology.py COMM_DEFAULTS)
# ImageNet-1K's training JPEGs: 1,281,167 files in 140 GB (the ILSVRC2012 train tar): 109 KB each.
IMAGENET_JPEG_BYTES = 109_000
LEVERS = {  # the largest loss, and what to do about it
    "stragglers": "run `mpirun ... hvdtrain bench --nodes` on the allocation and drain the slow nodes",
    "network": "--gradient-compression fp16, or a faster link",
    "host": "leave a core per rank for the communication",
    "coordination": "a shorter HOROVOD_CYCLE_TIME",
    "input": "more input threads or prep shards",
    "file system": "stage the shards on node-local disks",
}


@dataclass(frozen=True)
class Job:
    nodes: int
    ranks_per_node: int
    global_batch: int
    node_images_per_second: float  # one node alone, all its ranks
    link_gbps: float = 100.0
    latency_us: float = 5.0  # per ring hop (Omni-Path/InfiniBand ~1-2, TCP Ethernet ~10-50)
    params: int = RESNET50_PARAMS
    compression: str = "none"
    fusion_mb: float = 128.0  # HOROVOD_FUSION_THRESHOLD (Horovod 0.21+ default: 128 MB; 0: off)
    tensors: int = RESNET50_TENSORS
    overlap: float = OVERLAP  # share of compute that hides allreduce (0: none)
    host_seconds: float = 0.0  # per step, communication work on the rank's own cores
    input_images_per_second: float | None = None  # per rank, the input pipeline alone
    step_samples: tuple = field(default=(1.0,), repr=False)  # one rank's step times / their mean
    node_spread: float = 0.0  # the slowest node's deficit (0.05: 5% fewer images/s than the median)
    slow_node_samples: tuple | None = field(default=None, repr=False)  # its step times / typical mean
    cycle_ms: float = CYCLE_MS
    fs_gbps: float | None = None  # a shared file system all nodes read from (None: not a limit)
    image_bytes: float = IMAGENET_JPEG_BYTES

    @property
    def ranks(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def per_rank_batch(self) -> float:
        return self.global_batch / self.ranks

    @property
    def gradient_bytes(self) -> int:
        return self.params * BYTES_PER_PARAM[self.compression]


@dataclass(frozen=True)
class Prediction:
    step_seconds: float
    compute_seconds: float
    allreduce_seconds: float
    exposed_allreduce_seconds: float
    exposed_input_seconds: float
    bytes_per_node_link: float  # per step, each way
    images_per_second: float
    scaling_efficiency: float  # images/s / (nodes x one node's images/s)
    straggler_seconds: float = 0.0
    coordination_seconds: float = 0.0
    host_seconds: float = 0.0
    fs_needed_gbps: float = 0.0  # to read the images at the predicted rate
    fs_limited_seconds: float = 0.0  # added to the step by a shared file system that is too slow
    losses: dict = field(default_factory=dict)  # share of the step each term costs

    @property
    def largest_loss(self) -> tuple[str, float]:
        return max(self.losses.items(), key=lambda kv: kv[1], default=("none", 0.0))

    def as_dict(self) -> dict:
        return asdict(self)


def allreduce_seconds(job: Job) -> tuple[float, float]:
    """(time of one step's gradient allreduce, bytes each node's link carries each way)."""
    p = job.ranks
    if job.nodes == 1 or p == 1:
        return 0.0, 0.0
    link_bytes = 2 * (p - 1) / p * job.gradient_bytes
    buffers = (job.tensors if job.fusion_mb <= 0
               else max(1, math.ceil(job.gradient_bytes / (job.fusion_mb * 1e6))))
    latency = buffers * 2 * (p - 1) * job.latency_us * 1e-6
    return latency + link_bytes / (job.link_gbps * 1e9 / 8), link_bytes


def predict(job: Job) -> Prediction:
    for name, v in (("--nodes", job.nodes), ("--ranks-per-node", job.ranks_per_node),
                    ("--global-batch", job.global_batch), ("--link-gbps", job.link_gbps),
                    ("--node-images-per-second", job.node_images_per_second)):
        if v <= 0:
            raise ValueError(f"{name} {v} must be positive")
    if not 0 <= job.overlap <= 1:
        raise ValueError(f"--overlap {job.overlap} must be between 0 and 1")
    if not 0 <= job.node_spread < 1:
        raise ValueError(f"--node-spread {job.node_spread} must be in [0, 1)")
    compute = job.per_rank_batch / (job.node_images_per_second / job.ranks_per_node)
    straggler = compute * (stragglers(job) - 1.0)
    allreduce, link_bytes = allreduce_seconds(job)
    exposed = max(0.0, allreduce - job.overlap * compute)
    coordination = coordination_seconds(job)
    input_time = (job.per_rank_batch / job.input_images_per_second
                  if job.input_images_per_second else 0.0)
    exposed_input = max(0.0, input_time - compute)  # prefetching hides input up to one step
    step = compute + straggler + job.host_seconds + exposed + coordination + exposed_input
    fs_needed = job.global_batch / step * job.image_bytes * 8 / 1e9
    fs_limited = 0.0
    if job.fs_gbps and fs_needed > job.fs_gbps:
        fs_limited = job.global_batch / (job.fs_gbps * 1e9 / 8 / job.image_bytes) - step
    total = step + fs_limited
    losses = {"stragglers": straggler, "host": job.host_seconds, "network": exposed,
              "coordination": coordination, "input": exposed_input, "file system": fs_limited}
    rate = job.global_batch / total
    return Prediction(total, compute, allreduce, exposed, exposed_input, link_bytes, rate,
                      rate / (job.nodes * job.node_images_per_second), straggler, coordination,
                      job.host_seconds, fs_needed, fs_limited,
                      {k: v / total for k, v in losses.items() if v > 0})


def stragglers(job: Job) -> float:
    """E[slowest of the job's ranks] over E[slowest of one node's ranks]: the measured node rate
    already waits for its own slowest rank; the slowest node's deficit comes on top."""
    mine = spread.straggler_factor(job.step_samples, job.ranks_per_node)
    if job.nodes == 1:
        return 1.0
    slowest = spread.straggler_factor(job.step_samples, job.ranks, job.ranks_per_node, job.node_spread,
                                      job.slow_node_samples)
    return slowest / mine


def coordination_seconds(job: Job) -> float:
    """Horovod's per-step coordination, which no overlap hides (0 on one rank)."""
    p = job.ranks
    if p == 1 or job.nodes == 1:
        return 0.0
    return job.cycle_ms / 2e3 + 2 * math.ceil(math.log2(p)) * job.latency_us * 1e-6 + p * 1e-6
