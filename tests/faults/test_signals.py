"""Save on a signal: a batch system's warning (SIGUSR1, which mpirun forwards), a time limit or
scancel (SIGTERM), on the launcher or on one rank: every rank stops at the same step boundary, a
checkpoint is written, every process exits 75, and the rerun continues exactly."""

import json
import os
import re
import signal

import pytest
from support.fault_jobs import Job, resumable_copy

from conftest import DEMO, run
from hvdtrain.training import checkpoint

pytestmark = pytest.mark.integration


def _losses(stdout: str) -> dict[int, str]:
    return {int(s): loss for s, loss in re.findall(r"^step (\d+)/\d+ epoch \S+ loss (\S+)", stdout, re.M)}


@pytest.mark.parametrize("how", ["SIGUSR1 to mpirun", "SIGTERM to rank 1", "SIGUSR1 twice"])
def test_a_signal_saves_exits_75_and_the_rerun_continues_exactly(demo_model, demo_records, tmp_path, how):
    ref_dir, ref_out = demo_model
    model = resumable_copy(ref_dir, tmp_path)
    args = ["train", "--data-dir", demo_records, "--model-dir", model, *DEMO, "--log-every-steps", 1]
    job = Job(args, np=2)
    job.wait_for(r"^step 153/165")
    if how == "SIGTERM to rank 1":
        os.kill(job.rank_pid(1), signal.SIGTERM)  # mpirun is not told: the ranks agree by themselves
    else:
        job.proc.send_signal(signal.SIGUSR1)  # mpirun forwards it to every rank
        if how == "SIGUSR1 twice":
            job.wait_for(r"^step 15[4-9]/165|^checkpoint ")
            job.proc.send_signal(signal.SIGUSR1)
    code = job.wait(timeout=180)
    name = how.split()[0]
    m = re.search(rf"stopped by {name} at step (\d+) of 165: checkpoint (\S+);", job.output)
    assert code == 75 and m, (code, job.output[-3000:])
    step = int(m[1])
    assert 153 <= step < 165 and checkpoint.latest(model)[0].name == f"ckpt-{step:08d}"
    assert checkpoint.list_valid(model)[-1][0].name == f"ckpt-{step:08d}"  # verified whole
    rep = json.loads((model / "train_report.json").read_text())
    assert rep["stopped_by"] == name and rep["last_step"] == step
    assert not (model / "eval_results.json").exists()  # no evaluation of a run that did not finish

    res = run(args, np=2)
    assert res.returncode == 0, res.stderr
    assert f"resumed from {model / 'checkpoints' / f'ckpt-{step:08d}'}" in res.stdout
    # The rerun is the uninterrupted run: the same loss at every step it logs.
    ours, theirs = _losses(res.stdout), _losses(ref_out)
    assert sorted(ours) == list(range(step + 1, 166))
    assert all(ours[s] == theirs[s] for s in (160, 165)), (ours, theirs)
    got = json.loads((model / "train_report.json").read_text())["rank_weight_checksums"]
    want = json.loads((ref_dir / "train_report.json").read_text())["rank_weight_checksums"]
    assert got["trainable_at_end"] == want["trainable_at_end"]  # the weights, bit for bit
    # The BN moving averages were averaged over the ranks once more (at the signal's checkpoint):
    # averaging is linear, so they agree up to float32 rounding (1.2e-8 of the checksum, measured).
    assert got["at_end"] == pytest.approx(want["at_end"], rel=1e-6)
