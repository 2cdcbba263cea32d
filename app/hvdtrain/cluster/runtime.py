"""Bring up TensorFlow and Horovod for this process, in the only order that works.

Thread settings first (``topology``), then ``import tensorflow``, then pool sizes, then
``hvd.init()``, then the precision policy. train, eval and bench all start here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from hvdtrain.cluster import topology
from hvdtrain.cluster.topology import ThreadFlags
from hvdtrain.cluster.world import world
from hvdtrain.errors import ConfigError


@dataclass
class Runtime:
    tf: object
    hvd: object
    rank: int
    size: int
    threads: topology.ThreadSettings | None  # None: TensorFlow's own defaults (the baseline)
    precision: str
    hosts: list[str]  # host of each rank
    comm: str | None = None  # the Horovod/MPI settings in force (None: the baseline's defaults)
    onednn: str = ""  # oneDNN on or off, and who decided (topology.describe_onednn)

    def describe_world(self) -> str:
        names = list(dict.fromkeys(self.hosts))
        return (f"world: {self.size} rank(s) on {len(names)} host(s): {', '.join(names)} "
                f"(launched by {world().launcher})")

    def log(self, *args, **kw) -> None:
        """Print on rank 0 only (every rank computes the same thing)."""
        if self.rank == 0:
            print(*args, **kw, flush=True)


def start(flags: ThreadFlags, precision: str = "fp32", stall_timeout: int = 0,
          tf_defaults: bool = False) -> Runtime:
    """``tf_defaults`` leaves threading to TensorFlow (what the benchmark's baseline measures)."""
    settings = None if tf_defaults else topology.decide(
        flags.num_intra_threads, flags.num_inter_threads, flags.kmp_blocktime, flags.kmp_affinity)
    if precision == "bf16" and not topology.bf16_supported():  # TensorFlow would abort, not raise
        raise ConfigError(topology.bf16_refusal())
    if precision == "bf32":  # float32 model, oneDNN computes convolutions/matmuls in bfloat16
        os.environ["ONEDNN_DEFAULT_FPMATH_MODE"] = "BF16"
    comm = None
    if settings:
        topology.apply(settings)
        comm = topology.apply_comm_defaults()
    # A rank that stops answering (dead node, hung I/O) turns into an error instead of a hang:
    # Horovod warns at half the timeout; hvdtrain's watchdog (which names the rank) stops the job at
    # the timeout; Horovod's own shutdown at twice the timeout is the backstop.
    if stall_timeout > 0:
        os.environ.setdefault("HOROVOD_STALL_CHECK_TIME_SECONDS", str(max(1, stall_timeout // 2)))
        os.environ.setdefault("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", str(2 * stall_timeout))
    world().check_launch()
    import tensorflow as tf

    if not tf.keras.__name__.startswith("tf_keras"):  # Keras 2, see hvdtrain/__init__.py
        raise ConfigError(f"tf.keras is {tf.keras.__name__}, not tf-keras (Keras 2): TensorFlow was "
                          "imported before hvdtrain set TF_USE_LEGACY_KERAS=1, or tf-keras is missing")
    if settings:
        topology.configure_tensorflow(settings)
    import horovod.tensorflow as hvd

    hvd.init()
    world().check_size(hvd.size())  # N processes that each think they are rank 0 of 1: an error
    hosts = hvd.allgather_object(socket.gethostname()) if hvd.size() > 1 else [socket.gethostname()]
    if precision == "bf16":  # bfloat16 compute (AMX), float32 master weights and loss
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    onednn = topology.describe_onednn(topology.onednn_enabled())
    return Runtime(tf, hvd, hvd.rank(), hvd.size(), settings, precision, hosts, comm, onednn)


def start_local(flags: ThreadFlags, precision: str = "fp32") -> Runtime:
    """One process with no Horovod (``hvd`` None): export, predict and the evaluation of an export,
    which run on a workstation and must not put Horovod ops in what they save (horovod#4028)."""
    if world().size > 1:
        raise ConfigError(f"this command runs in one process, not under a launcher with {world().size} "
                          "ranks; run it without mpirun/srun")
    settings = topology.decide(flags.num_intra_threads, flags.num_inter_threads, flags.kmp_blocktime,
                               flags.kmp_affinity)
    if precision == "bf16" and not topology.bf16_supported():
        raise ConfigError(topology.bf16_refusal())
    topology.apply(settings)
    import tensorflow as tf

    topology.configure_tensorflow(settings)
    if precision == "bf16":
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    onednn = topology.describe_onednn(topology.onednn_enabled())
    return Runtime(tf, None, 0, 1, settings, precision, [socket.gethostname()], None, onednn)
