"""Container definitions: hadolint-clean Dockerfile, a Singularity.def that is up to date with it,
and an entrypoint that dispatches to hvdtrain with the thread defaults of the cores it sees."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import make_singularity_def  # containers/ (pyproject pytest pythonpath)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_committed_singularity_def_matches_the_dockerfile():
    fresh = make_singularity_def.convert(str(ROOT / "containers" / "Dockerfile"))
    committed = (ROOT / "containers" / "Singularity.def").read_text()
    assert committed == fresh, "containers/Singularity.def is stale: run `make singularity-def`"


def test_singularity_def_keeps_what_the_image_needs():
    text = (ROOT / "containers" / "Singularity.def").read_text()
    # The pins are pyproject.toml's (read by pins.py); Horovod is built by the one patched recipe.
    assert "containers/pins.py deps" in text and "sh /src/containers/horovod/build-wheel.sh" in text
    assert "containers/horovod /src/containers/horovod" in text and "pyproject.toml" in text
    assert 'exec /usr/local/bin/hvdtrain-entrypoint "$@"' in text  # the user's args, not CMD
    assert "%test\n/usr/local/bin/hvdtrain-smoke-test" in text
    assert "OMP_NUM_THREADS" not in text  # Apptainer's %environment would override the user's


def test_flatten_drops_the_copy_between_stages_and_substitutes_args():
    flat, test = make_singularity_def.flatten((ROOT / "containers" / "Dockerfile").read_text())
    assert "--from" not in flat and "${MPI}" not in flat and flat.startswith("FROM docker.io/")
    assert test == ["/usr/local/bin/hvdtrain-smoke-test /tmp/smoke && rm -rf /tmp/smoke"]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(BIN))
    if hadolint is None:
        pytest.skip("hadolint not installed (make lint-tools installs it)")
    res = subprocess.run([hadolint, "--config", str(ROOT / "containers/hadolint.yaml"),
                          str(ROOT / "containers/Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _entrypoint(*args, **env):
    full = {**{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "KMP_BLOCKTIME")},
            "PATH": f"{BIN}:{os.environ['PATH']}", **env}
    return subprocess.run(["sh", str(ROOT / "entrypoints/container-entrypoint.sh"), *args],
                          capture_output=True, text=True, env=full)


def test_entrypoint_runs_hvdtrain_commands_and_other_commands():
    assert _entrypoint("version").stdout.strip() == "0.1.0"
    res = _entrypoint("sh", "-c", "echo $OMP_NUM_THREADS $KMP_BLOCKTIME")
    assert res.stdout.split() == [str(len(os.sched_getaffinity(0))), "1"]


def test_entrypoint_keeps_the_users_thread_settings():
    res = _entrypoint("sh", "-c", "echo $OMP_NUM_THREADS", OMP_NUM_THREADS="7")
    assert res.stdout.strip() == "7"


def _launcher(tmp_path, mpirun_banner, **env):
    fake = tmp_path / "mpirun"
    fake.write_text(f"#!/bin/sh\necho '{mpirun_banner}'\n")
    fake.chmod(0o755)
    full = {**os.environ, "DRY_RUN": "1", "MPIRUN": str(fake), "NP": "512", "PPN": "2",
            "SIF": "/images/hvdtrain.sif", "BINDS": "/scratch,/models", **env}
    res = subprocess.run(["sh", str(ROOT / "entrypoints/mpirun-singularity.sh"), "train",
                          "--train_batch_size", "24576"], capture_output=True, text=True, env=full)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_launcher_open_mpi_binds_each_rank_to_a_socket(tmp_path):
    cmd = _launcher(tmp_path, "mpirun (Open MPI) 4.1.4", OMP_NUM_THREADS="22")
    joined = " ".join(cmd)
    assert "-np 512 --npernode 2 --map-by socket --bind-to socket" in joined  # one rank a socket
    assert "-x OMP_NUM_THREADS" in joined
    assert joined.endswith("exec --bind /scratch,/models /images/hvdtrain.sif "
                           "/usr/local/bin/hvdtrain-entrypoint train --train_batch_size 24576")


def test_launcher_intel_mpi_uses_ppn_and_socket_domains(tmp_path):
    joined = " ".join(_launcher(tmp_path, "Intel(R) MPI Library for Linux* OS, Version 2021.14"))
    assert "-np 512 -ppn 2 -genv I_MPI_PIN_DOMAIN socket" in joined


@pytest.mark.parametrize("script", ["slurm-seed-256.sbatch", "pbs-seed-256.pbs"])
def test_batch_templates_reproduce_the_seed_run(script):
    text = (ROOT / "entrypoints" / script).read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "entrypoints" / script)]).returncode == 0
    for flag in ("--train_batch_size 24576", "--train_steps 4680", "--num_intra_threads 22",
                 "--num_inter_threads 2", "--kmp_blocktime 1", "--use_tpu=False"):
        assert flag in text


@pytest.mark.parametrize("script", ["slurm-seed-256.sbatch", "slurm-train.sbatch"])
def test_slurm_templates_save_on_the_warning_and_requeue(script):
    text = (ROOT / "entrypoints" / script).read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "entrypoints" / script)]).returncode == 0
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR1@180", "#SBATCH --open-mode=append"):
        assert line in text.splitlines(), (script, line)
    train = (ROOT / "entrypoints" / "slurm-train.sbatch").read_text()
    assert "exec bash \"$(dirname \"$launcher\")/run-unattended.sh\"" in train  # the batch shell itself


def test_launcher_defaults_to_one_rank_per_socket(tmp_path):
    sockets = subprocess.run("lscpu -p=SOCKET | grep -v '^#' | sort -u | wc -l", shell=True,
                             capture_output=True, text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "PPN"}
    fake = tmp_path / "mpirun"
    fake.write_text("#!/bin/sh\necho 'mpirun (Open MPI) 4.1.4'\n")
    fake.chmod(0o755)
    res = subprocess.run(["sh", str(ROOT / "entrypoints/mpirun-singularity.sh"), "info"],
                         capture_output=True, text=True,
                         env={**env, "DRY_RUN": "1", "MPIRUN": str(fake)})
    assert f"--npernode {sockets} " in res.stdout, res.stdout


# ------------------------------------------------------------- run-unattended.sh (the templates')
def _requeue_job(tmp_path, signal_to_send=None, **env):
    """The wrapper around a stand-in for mpirun that saves on SIGUSR1 as the ranks do (exit 75);
    ``scontrol`` and ``qrerun`` are stand-ins that record their arguments."""
    import signal as sig
    import time

    bin_dir, log = tmp_path / "bin", tmp_path / "requeued"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("scontrol", "qrerun"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        (bin_dir / tool).chmod(0o755)
    job = tmp_path / "job.sh"
    job.write_text('#!/bin/bash\ntrap "echo saved; exit 75" USR1\necho started\n'
                   'for i in $(seq 100); do sleep 0.1; done\n')
    proc = subprocess.Popen(["bash", str(ROOT / "entrypoints" / "run-unattended.sh"), "bash", str(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env})
    if signal_to_send:
        assert "attempt" in proc.stdout.readline() and proc.stdout.readline().strip() == "started"
        time.sleep(0.2)
        proc.send_signal(getattr(sig, signal_to_send))  # to the wrapper, as Slurm's --signal=B: does
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err, log.read_text() if log.exists() else ""


@pytest.mark.parametrize("signal_to_send", ["SIGUSR1", "SIGTERM"])
def test_a_warning_or_the_time_limit_saves_and_requeues_the_job(tmp_path, signal_to_send):
    code, out, _, requeued = _requeue_job(tmp_path, signal_to_send, SLURM_JOB_ID="42")
    assert code == 75 and "asking the ranks to save" in out and "saved" in out
    assert requeued == "scontrol requeue 42\n"


def test_pbs_jobs_rerun_and_a_spent_budget_stops_requeueing(tmp_path):
    code, _, _, requeued = _requeue_job(tmp_path, "SIGUSR1", PBS_JOBID="7.pbs")
    assert code == 75 and requeued == "qrerun 7.pbs\n"
    (tmp_path / "requeued").unlink()
    code, _, err, requeued = _requeue_job(tmp_path, "SIGUSR1", SLURM_JOB_ID="42", SLURM_RESTART_COUNT="3")
    assert code == 75 and requeued == "" and "restart budget is spent (3 of HVDTRAIN_MAX_RESTARTS=3)" in err


def test_a_finished_job_is_not_requeued_and_a_bad_budget_is_refused(tmp_path):
    (tmp_path / "ok.sh").write_text("exit 0\n")
    res = subprocess.run(["bash", str(ROOT / "entrypoints" / "run-unattended.sh"), "bash",
                          str(tmp_path / "ok.sh")], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "SLURM_JOB_ID": "42"})
    assert res.returncode == 0 and "requeue" not in res.stdout.replace("run-unattended", "")
    code, out, err, _ = _requeue_job(tmp_path, HVDTRAIN_MAX_RESTARTS="three")
    assert code == 2 and "HVDTRAIN_MAX_RESTARTS='three' is not a number" in err and "started" not in out


# -------------------------------------------------------- run-unattended.sh after a lost node
def _lost_node_job(tmp_path, hosts=("n1", "n2", "n3", "n4"), dead=("n2",), fail_times=1, args=(), **env):
    """The wrapper around a stand-in launcher that fails ``fail_times`` times (as mpirun does when a
    node dies) and records NP and the hostfile of each run; hosts in ``dead`` do not answer probes."""
    bin_dir, runs = tmp_path / "bin", tmp_path / "runs"
    bin_dir.mkdir(exist_ok=True)
    down = " ".join(dead)
    probe = ('#!/bin/sh\nfor h in "$@"; do\n'
             f'  case " {down} " in *" ${{h#--nodelist=}} "*) exit 1 ;; esac\ndone\nexit 0\n')
    (bin_dir / "probe").write_text(probe)  # HVDTRAIN_PROBE's stand-in: `probe HOST true`
    (bin_dir / "srun").write_text(probe)   # under Slurm: `srun ... --nodelist=HOST true`
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "scontrol $*" >> "{tmp_path / "requeued"}"\n')
    for tool in ("probe", "srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("".join(f"{h} slots=2\n" for h in hosts))
    launcher = tmp_path / "launcher.sh"
    launcher.write_text('#!/bin/bash\nhosts=$(awk \'{print $1}\' "$HOSTFILE" | paste -sd, -)\n'
                        f'echo "NP=$NP hosts=$hosts" >> "{runs}"\n'
                        f'[ "$(wc -l < "{runs}")" -gt {fail_times} ] || exit 1\nexit 0\n')
    wrapper = ROOT / "entrypoints" / "run-unattended.sh"
    res = subprocess.run(["bash", str(wrapper), "bash", str(launcher), *args],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                              "HOSTFILE": str(hostfile), "NP": str(2 * len(hosts)),
                              "HVDTRAIN_PROBE": str(bin_dir / "probe"), "HVDTRAIN_PROBE_SECONDS": "5", **env})
    requeued = (tmp_path / "requeued").read_text() if (tmp_path / "requeued").exists() else ""
    return res, runs.read_text().splitlines(), requeued


def test_a_lost_node_is_left_out_and_the_run_restarts_in_the_allocation(tmp_path):
    res, runs, requeued = _lost_node_job(tmp_path, args=("--train-batch-size", "24"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert runs == ["NP=8 hosts=n1,n2,n3,n4", "NP=6 hosts=n1,n3,n4"]
    assert "lost n2: restarting at once on n1,n3,n4, 6 rank(s), in this allocation" in res.stdout
    assert requeued == ""


def test_a_batch_that_no_longer_divides_requeues_without_the_lost_node(tmp_path):
    res, runs, requeued = _lost_node_job(tmp_path, args=("--train_batch_size=32",), SLURM_JOB_ID="42")
    assert res.returncode == 1 and runs == ["NP=8 hosts=n1,n2,n3,n4"]  # 32 over 6 ranks: no
    assert "the global batch 32 does not divide over the 6 rank(s) left" in res.stdout
    assert requeued == "scontrol update JobId=42 ExcNodeList=n2\nscontrol requeue 42\n"


def test_a_failure_with_every_host_answering_ends_the_job(tmp_path):
    res, runs, requeued = _lost_node_job(tmp_path, dead=())
    assert res.returncode == 1 and len(runs) == 1 and requeued == ""
    assert "every host answers: not a lost node; the job ends with status 1" in res.stdout


def test_restarts_after_lost_nodes_stop_at_the_budget(tmp_path):
    # one requeue already happened (Slurm counts it): the budget of 1 is spent
    res, runs, _ = _lost_node_job(tmp_path, hosts=("n1", "n2", "n3"), dead=("n3",),
                                  HVDTRAIN_MAX_RESTARTS="1", SLURM_RESTART_COUNT="1")
    assert res.returncode == 1 and runs == ["NP=6 hosts=n1,n2,n3"]
    assert "the restart budget is spent (1 of HVDTRAIN_MAX_RESTARTS=1)" in res.stderr


def test_the_wrappers_default_batch_is_hvdtrains():
    from hvdtrain.training.config import ScheduleFlags

    text = (ROOT / "entrypoints" / "run-unattended.sh").read_text()
    assert f"echo {ScheduleFlags().train_batch_size}  # TrainConfig.train_batch_size" in text
