"""Who this process is in the job, and how jobs are launched: one answer for the whole program.

``world()`` reads rank, size, local rank and the launcher from the environment the launcher set,
before TensorFlow or MPI is loaded (thread sizing needs the local rank count first). Horovod and
mpi4py later report their own size; ``check_size`` turns a disagreement into an error instead of
N processes that each silently believe they are rank 0 of 1 (host MPI differs from the image's, or
``srun`` without ``--mpi=pmix``).

``mpirun_command`` is the one place an ``mpirun`` command line is built (tests, bench, tools).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hvdtrain.errors import HvdtrainError

# Every variable world() reads (tests clear them to simulate a plain process).
LAUNCHER_VARS = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                 "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
                 "MPI_LOCALNRANKS", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID",
                 "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE")


class WorldError(HvdtrainError, RuntimeError):
    """The launcher and the MPI library disagree about the job."""


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    local_size: int
    launcher: str  # "mpirun (Open MPI)", "PMI (Intel MPI/MPICH hydra)", "srun", "srun (PMIx)" or "none"

    def check_launch(self) -> None:
        """Before MPI starts: ``srun`` without a PMI plugin cannot wire ranks together."""
        if self.launcher == "srun" and self.size > 1:
            raise WorldError(
                f"the launcher (srun) started {self.size} rank(s) without PMI, so MPI would see 1 "
                f"in each and every rank would train alone: use `srun --mpi=pmix` (Debian's Slurm "
                f"and Open MPI), or mpirun inside the allocation")

    def check_size(self, mpi_size: int, what: str = "Horovod") -> None:
        if mpi_size != self.size:
            raise WorldError(
                f"the launcher ({self.launcher}) started {self.size} rank(s) but {what} sees "
                f"{mpi_size}: the MPI that launched the job is not the one hvdtrain was built "
                f"against (in a container, host and image MPI must be the same implementation), "
                f"or the ranks were started without PMI (under Slurm use `srun --mpi=pmix`)")


def _int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _tasks_on_first_node(spec: str) -> int | None:
    """Slurm's ``2(x3),1`` tasks-per-node notation: the count on this kind of node."""
    head = spec.split(",")[0].split("(")[0].strip()
    return int(head) if head.isdigit() else None


def world() -> World:
    """This process's place in the job, from the launcher's variables (first match wins)."""
    env = os.environ
    if any(name.startswith("OMPI_COMM_WORLD_") for name in env):
        return World(_int("OMPI_COMM_WORLD_RANK") or 0, _int("OMPI_COMM_WORLD_SIZE") or 1,
                     _int("OMPI_COMM_WORLD_LOCAL_RANK") or 0,
                     _int("OMPI_COMM_WORLD_LOCAL_SIZE") or 1, "mpirun (Open MPI)")
    if "PMI_SIZE" in env:
        return World(_int("PMI_RANK") or 0, _int("PMI_SIZE") or 1, _int("MPI_LOCALRANKID") or 0,
                     _int("MPI_LOCALNRANKS") or 1, "PMI (Intel MPI/MPICH hydra)")
    # A Slurm job step (srun). The batch script itself is not a step: its SLURM_NTASKS is the
    # allocation's, not a count of processes that were started.
    if "SLURM_STEP_NUM_TASKS" in env:
        local = _tasks_on_first_node(env.get("SLURM_STEP_TASKS_PER_NODE", "")) or 1
        return World(_int("PMIX_RANK") if "PMIX_RANK" in env else (_int("SLURM_PROCID") or 0),
                     _int("SLURM_STEP_NUM_TASKS") or 1, _int("SLURM_LOCALID") or 0, local,
                     "srun (PMIx)" if "PMIX_RANK" in env else "srun")
    return World(0, 1, 0, 1, "none")


def mpirun_command(np: int, *, bind: str = "none", extra: tuple[str, ...] = ()) -> list[str]:
    """``mpirun -np N`` for Open MPI on one host (2 cores: oversubscription is expected)."""
    return ["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", bind, *extra]


def mpirun_env(base: dict | None = None) -> dict:
    """An environment in which Open MPI's mpirun also runs as root (CI machines are root)."""
    env = dict(os.environ if base is None else base)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env
