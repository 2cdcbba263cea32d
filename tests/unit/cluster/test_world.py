"""Who am I in the job: one answer from the launcher's variables, and a clear error when the MPI
library disagrees with the launcher (every rank would otherwise train alone as rank 0 of 1)."""

import socket

import pytest

from hvdtrain.cluster import netbeat
from hvdtrain.cluster.world import LAUNCHER_VARS, WorldError, mpirun_command, world


@pytest.fixture
def env(monkeypatch):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_plain_process_is_rank_0_of_1(env):
    w = world()
    assert (w.rank, w.size, w.local_rank, w.local_size, w.launcher) == (0, 1, 0, 1, "none")


def test_open_mpi(env):
    for k, v in {"OMPI_COMM_WORLD_RANK": 3, "OMPI_COMM_WORLD_SIZE": 4, "OMPI_COMM_WORLD_LOCAL_RANK": 1,
                 "OMPI_COMM_WORLD_LOCAL_SIZE": 2, "SLURM_STEP_NUM_TASKS": 2}.items():
        env.setenv(k, str(v))
    w = world()
    assert (w.rank, w.size, w.local_rank, w.local_size) == (3, 4, 1, 2) and "Open MPI" in w.launcher


def test_intel_mpi_hydra(env):
    for k, v in {"PMI_RANK": 1, "PMI_SIZE": 512, "MPI_LOCALRANKID": 1, "MPI_LOCALNRANKS": 2}.items():
        env.setenv(k, str(v))
    w = world()
    assert (w.rank, w.size, w.local_rank, w.local_size) == (1, 512, 1, 2) and "PMI" in w.launcher


def test_srun_step_with_and_without_pmix(env):
    for k, v in {"SLURM_STEP_NUM_TASKS": 4, "SLURM_PROCID": 2, "SLURM_LOCALID": 0,
                 "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}.items():
        env.setenv(k, str(v))
    w = world()
    assert (w.rank, w.size, w.local_size, w.launcher) == (2, 4, 2, "srun")
    env.setenv("PMIX_RANK", "2")
    assert world().launcher == "srun (PMIx)"


def test_a_batch_script_is_not_a_job_step(env):
    env.setenv("SLURM_NTASKS", "512")  # the allocation's count, not processes that were started
    env.setenv("SLURM_PROCID", "0")
    assert world().size == 1


def test_size_mismatch_is_an_error_that_says_why(env):
    env.setenv("SLURM_STEP_NUM_TASKS", "2")
    with pytest.raises(WorldError, match=r"\(srun\) started 2 rank\(s\) but Horovod sees 1.*--mpi=pmix"):
        world().check_size(1)
    world().check_size(2)


def test_one_mpirun_command_line():
    assert mpirun_command(2) == ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none"]
    assert mpirun_command(4, bind="core")[-1] == "core"


def test_netbeat_names_the_rank_whose_datagrams_stopped():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    rank0 = netbeat.NetBeat(0, 3, [], sock, ["h0", "h1", "h2"])
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer1 = netbeat.NetBeat(1, 3, [sock.getsockname()], sender, ["h0", "h1", "h2"])
    rank0.started -= 10  # both peers have been silent for 10 s ...
    peer1.send(5)        # ... until rank 1 speaks
    import time

    for _ in range(50):
        if 1 in rank0.last_heard:
            break
        time.sleep(0.05)
    assert [r for r, _ in rank0.silent(5)] == [2]
    assert "rank 2 (host h2)" in rank0.describe_silent(5) and "link of h2 is down" in rank0.describe_silent(5)
    rank0.stop()
    sender.close()
    assert all("." in ip and not ip.startswith("127.") for ip in netbeat.local_ipv4())
