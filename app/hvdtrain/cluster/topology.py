"""Where this process runs and how many threads it may use — decided before TensorFlow loads.

The seed's lesson: with several workers per node, each worker's intra-op pool must be sized to
its share of the cores (22 intra + 2 inter on a 48-core node with 2 workers), or the workers
oversubscribe the node. OMP/KMP variables are read once when TensorFlow (oneDNN/OpenMP) loads,
so ``apply`` must run before the first ``import tensorflow``. The same holds for the switch
that turns oneDNN on (``ONEDNN_DEFAULTS``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hvdtrain.cluster.world import world
from hvdtrain.flags import Validated, flag

# CPU features for which TensorFlow's Linux wheels turn oneDNN on by themselves
# (DefaultOneDnnPolicy, tensorflow/core/util/util.cc).
TF_ONEDNN_CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_flags() -> set[str]:
    """The ISA flags of /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def node_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def cores_per_rank() -> int:
    """This rank's share of the cores it can see.

    When the launcher already bound this rank to a subset (``--bind-to socket``), the affinity
    mask is that subset and is shared by no other local rank only if it is smaller than the
    node; we cannot tell, so we divide by the local rank count unless the mask is already small.
    """
    cores = node_cores()
    ranks = world().local_size
    total = os.cpu_count() or cores
    if cores < total:  # bound by the launcher: the mask is this rank's share already
        return max(1, cores)
    return max(1, cores // ranks)


@dataclass
class ThreadFlags(Validated):
    """The per-process thread flags of train, eval and bench; ``decide`` turns them into settings."""

    num_intra_threads: int | None = flag(None, "--num-intra-threads", "--num_intra_threads", low=1,
                                         help="Intra-op threads per rank (seed: 22). Default: this "
                                              "rank's cores.")
    num_inter_threads: int | None = flag(None, "--num-inter-threads", "--num_inter_threads", low=1,
                                         help="Inter-op threads per rank (seed: 2). Default: 2, "
                                              "or 1 on a 1-core rank.")
    kmp_blocktime: int | None = flag(None, "--kmp-blocktime", "--kmp_blocktime", low=0,
                                     help="KMP_BLOCKTIME in ms (seed: 1). Default: $KMP_BLOCKTIME or 1.")
    kmp_affinity: str | None = flag(None, "--kmp-affinity", "--kmp_affinity",
                                    help="KMP_AFFINITY. Default: $KMP_AFFINITY or "
                                         "granularity=fine,compact,1,0.")


@dataclass(frozen=True)
class ThreadSettings:
    intra_op: int
    inter_op: int
    omp_num_threads: int
    kmp_blocktime: int
    kmp_affinity: str
    derived: bool  # True when hvdtrain chose the numbers (printed so a user can see why)

    def describe(self) -> str:
        src = "derived from the cores of this rank" if self.derived else "as given"
        return (f"threads: intra_op={self.intra_op} inter_op={self.inter_op} "
                f"OMP_NUM_THREADS={self.omp_num_threads} KMP_BLOCKTIME={self.kmp_blocktime} "
                f"KMP_AFFINITY={self.kmp_affinity} ({src}; {cores_per_rank()} cores for "
                f"this rank, {world().local_size} rank(s) on this node)")


def decide(intra_op: int | None = None, inter_op: int | None = None,
           kmp_blocktime: int | None = None, kmp_affinity: str | None = None) -> ThreadSettings:
    """Thread settings for this rank: the user's values where given, else the seed's rule.

    The seed ran inter_op=2 and intra_op=cores-2 per worker (22 of 24). Two inter-op threads pay
    on small ranks too: they let TensorFlow's own memory-bound ops (ReLU, its gradient, the
    residual adds: a quarter of a bf16 step) overlap the oneDNN convolutions (bench/NOTES.md,
    "The bf16 step"); below 8 cores intra_op keeps every core. A 1-core rank gets 1 of each.
    """
    cores = cores_per_rank()
    env_omp = os.environ.get("OMP_NUM_THREADS", "")
    derived = intra_op is None and inter_op is None
    if inter_op is None:
        inter_op = 2 if cores >= 2 else 1
    if intra_op is None:
        intra_op = int(env_omp) if env_omp.isdigit() else max(1, cores - (inter_op if cores >= 8 else 0))
    if kmp_blocktime is None:
        env_bt = os.environ.get("KMP_BLOCKTIME", "")
        kmp_blocktime = int(env_bt) if env_bt.isdigit() else 1
    if kmp_affinity is None:
        kmp_affinity = os.environ.get("KMP_AFFINITY", "granularity=fine,compact,1,0")
    return ThreadSettings(intra_op, inter_op, intra_op, kmp_blocktime, kmp_affinity, derived)


# Horovod's background thread and MPI's progress engine run on the same cores as TensorFlow's
# compute threads. By default Horovod negotiates every 1 ms and Open MPI busy-polls while a rank
# waits for its peer, so a rank that finished its backward pass first spins on cores the other
# ranks' compute needs. Measured on 2 ranks x 1 core, ResNet-50 at 112 px (bench/NOTES.md,
# "Scaling"): 56% scaling efficiency with Horovod's and MPI's defaults, 77% with a 20 ms cycle, 83%
# with MPI yielding, 90% with both. A user's own setting of either variable wins.
COMM_DEFAULTS = {"HOROVOD_CYCLE_TIME": "20", "OMPI_MCA_mpi_yield_when_idle": "1"}


def apply_comm_defaults() -> str:
    """Export COMM_DEFAULTS where the user set nothing (before ``hvd.init()``); describe them."""
    for name, value in COMM_DEFAULTS.items():
        os.environ.setdefault(name, value)
    shown = [f"{name}={os.environ[name]}" for name in COMM_DEFAULTS]
    fusion = os.environ.get("HOROVOD_FUSION_THRESHOLD")
    shown.append(f"HOROVOD_FUSION_THRESHOLD={fusion + ' bytes' if fusion else 'Horovod default'}")
    return "communication: " + ", ".join(shown)


# TensorFlow turns oneDNN on by itself only on CPUs with TF_ONEDNN_CPU_FLAGS. Elsewhere (AVX2-only
# CPUs such as AMD Zen 3; AVX-512 CPUs without VNNI such as the seed's Skylake 8160) every
# convolution runs on Eigen's kernels, several times slower (bench/NOTES.md, "oneDNN on CPUs
# without VNNI"). hvdtrain is built on oneDNN, so it asks for it everywhere; a user's setting wins.
ONEDNN_DEFAULTS = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def onednn_enabled() -> bool | None:
    """Whether the loaded TensorFlow runs oneDNN kernels (None: this build cannot say)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # pragma: no cover - a TensorFlow without the query
        return None


def describe_onednn(enabled: bool | None) -> str:
    """One line: oneDNN's state, who decided it, and what TensorFlow alone would have done here."""
    state = {True: "on", False: "off", None: "unknown"}[enabled]
    own = sorted(cpu_flags() & set(TF_ONEDNN_CPU_FLAGS))
    tf_alone = (f"on ({', '.join(own)})" if own
                else "off (this CPU has no VNNI, BF16 or AMX)")
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    return f"oneDNN: {state} (TF_ENABLE_ONEDNN_OPTS={value}; TensorFlow's own default here: {tf_alone})"


# oneDNN has bfloat16 convolution and matmul kernels only from AVX-512 (avx512bw, emulated),
# AVX-NE-CONVERT or AMX up. Below that, TensorFlow does not raise an error: the process aborts
# inside a kernel. ONEDNN_MAX_CPU_ISA caps what oneDNN may use, so a cap below AVX-512 removes
# them too (the slow machine class is emulated this way: bench/NOTES.md).
BF16_CPU_FLAGS = ("avx512bw", "avx_ne_convert", "amx_bf16")
ISA_LIMITS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI")


def _isa_cap_below_bf16() -> str | None:
    """The ONEDNN_MAX_CPU_ISA value when it caps oneDNN below its bfloat16 kernels, else None."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    return limit if limit.upper() in ISA_LIMITS_WITHOUT_BF16 else None


def bf16_supported() -> bool:
    """Whether oneDNN can run bfloat16 kernels on this CPU under this process's ISA cap."""
    return _isa_cap_below_bf16() is None and bool(cpu_flags() & set(BF16_CPU_FLAGS))


def bf16_refusal(flag: str = "--precision bf16") -> str:
    """Why ``flag`` cannot run here, naming the CPU's flags or the ISA cap that decide it."""
    limit = _isa_cap_below_bf16()
    why = (f"ONEDNN_MAX_CPU_ISA={limit} caps oneDNN below its bfloat16 kernels" if limit else
           f"this CPU has none of {', '.join(BF16_CPU_FLAGS)}, which oneDNN's bfloat16 kernels need")
    return f"{flag}: {why}; use --precision fp32"


def apply(settings: ThreadSettings) -> None:
    """Export the settings for oneDNN/OpenMP; must run before TensorFlow is imported."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("topology.apply() called after TensorFlow was imported; "
                           "thread settings would be ignored")
    for name, value in ONEDNN_DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ["OMP_NUM_THREADS"] = str(settings.omp_num_threads)
    os.environ["KMP_BLOCKTIME"] = str(settings.kmp_blocktime)
    os.environ["KMP_AFFINITY"] = settings.kmp_affinity


def configure_tensorflow(settings: ThreadSettings) -> None:
    """Size TensorFlow's own pools (call right after importing TensorFlow, before any op runs)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op)


def shell_exports() -> str:
    """``export`` lines for the thread and oneDNN variables the user has not set (used by the
    container entrypoint, so non-hvdtrain commands in the image get the same defaults)."""
    s = decide()
    wanted = {"OMP_NUM_THREADS": s.omp_num_threads, "KMP_BLOCKTIME": s.kmp_blocktime,
              "KMP_AFFINITY": s.kmp_affinity, **ONEDNN_DEFAULTS}
    return "\n".join(f"export {k}='{v}'" for k, v in wanted.items() if k not in os.environ)


if __name__ == "__main__":
    print(shell_exports())
