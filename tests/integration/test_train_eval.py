"""The main job end to end under mpirun: convergence on the real digits, identical ranks,
rank-0 checkpoints, resume across rank counts, exactly-once evaluation, seed flags.

All of these read the one `make demo` run that conftest trains per pytest run."""

import json
import re
import shutil

import pytest

from conftest import DEMO, run

pytestmark = pytest.mark.integration


@pytest.fixture
def trained(demo_model):
    """The shared `make demo` run (conftest.demo_model): trained once per pytest run."""
    return demo_model


def test_converges_on_the_demo_data(trained):
    model_dir, out = trained
    ev = json.loads((model_dir / "eval_results.json").read_text())
    assert ev["top1"] >= 0.95 and ev["num_images"] == 364 and ev["global_step"] == 165
    assert re.search(r"^Top-1 accuracy = 0\.9\d+, Top-5 accuracy = [\d.]+, loss = [\d.]+, "
                     r"global_step = 165$", out, re.M)


def test_plan_is_printed_before_step_one_and_report_is_complete(trained):
    model_dir, out = trained
    assert out.index("plan: 1,433 train images, global batch 128 = 64 x 2 rank(s)") < out.index("step 40/165")
    assert "warm-up 22 steps; 165 train steps" in out
    rep = json.loads((model_dir / "train_report.json").read_text())
    for key in ("ttt_seconds", "images_per_second", "global_batch_size", "num_ranks", "train_steps",
                "epochs", "final_loss", "precision"):
        assert key in rep
    assert rep["num_ranks"] == 2 and rep["global_batch_size"] == 128 and rep["images_per_second"] > 0
    made = json.loads((model_dir / "run_config.json").read_text())  # how the run was made
    assert made["num_ranks"] == 2 and made["plan"]["train_steps"] == 165
    assert made["changed"]["--model"] == "resnet18" and made["changed"]["--random-flip"] is False
    assert made["flags"]["--seed"] == 0 and "--seed" not in made["changed"]


def test_ranks_hold_identical_weights(trained):
    rep = json.loads((trained[0] / "train_report.json").read_text())
    for when in ("after_broadcast", "at_end"):
        sums = rep["rank_weight_checksums"][when]
        assert len(sums) == 2 and sums[0] == sums[1]
    assert rep["rank_weight_checksums"]["after_broadcast"] != rep["rank_weight_checksums"]["at_end"]


def test_checkpoints_written_once_by_rank_zero(trained):
    model_dir, out = trained
    names = sorted(p.name for p in (model_dir / "checkpoints").iterdir())
    assert names == ["ckpt-00000050", "ckpt-00000100", "ckpt-00000150", "ckpt-00000165"]
    # rank 0 alone logs and saves: one line per checkpoint, not one per rank
    assert out.count("checkpoint ") == 4 and (model_dir / "train").is_dir()


@pytest.mark.parametrize("np,batch", [(1, 100), (2, 64), (3, 50)])
def test_eval_counts_every_image_once(trained, demo_records, np, batch, tmp_path):
    model_dir = trained[0]
    out_dir = tmp_path / "m"
    shutil.copytree(model_dir, out_dir)
    res = run(["eval", "--data-dir", demo_records, "--model-dir", out_dir, "--eval-batch-size", batch],
              np=np if np > 1 else None)
    assert res.returncode == 0, res.stderr
    ev = json.loads((out_dir / "eval_results.json").read_text())
    ref = json.loads((model_dir / "eval_results.json").read_text())
    assert ev["num_images"] == 364 and ev["top1"] == pytest.approx(ref["top1"], abs=1e-9)
    assert re.search(r"^Evaluation \[\d+/\d+\]$", res.stdout, re.M)


def test_resume_from_two_ranks_on_one(trained, demo_records, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained[0], model_dir)
    shutil.rmtree(model_dir / "checkpoints" / "ckpt-00000165")
    res = run(["train", "--data-dir", demo_records, "--model-dir", model_dir, *DEMO])
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout and "step 150" in res.stdout
    changed = re.search(r"^resumed with changed settings: (.*)$", res.stdout, re.M)
    assert changed and f"--model-dir {trained[0]} -> {model_dir}" in changed[1], res.stdout[-2000:]
    assert "--eval-at-end True -> False" in changed[1]  # the shared run also evaluated at its end
    rep = json.loads((model_dir / "train_report.json").read_text())
    assert rep["start_step"] == 150 and rep["steps_this_run"] == 15 and rep["num_ranks"] == 1
    assert (model_dir / "checkpoints" / "ckpt-00000165").is_dir()


def test_seed_command_line_is_accepted(demo_records, tmp_path):
    res = run(["train", "--train_batch_size", 64, "--train_steps", 24, "--num_intra_threads", 2,
               "--num_inter_threads", 1, f"--data_dir={demo_records}", "--model_dir", tmp_path / "m",
               "--use_tpu=False", "--kmp_blocktime", 1, "--model", "resnet18", "--image_size", 32,
               "--eval-every-epochs", 1, "--log-every-steps", 12])
    assert res.returncode == 0, res.stderr
    assert "intra_op=2 inter_op=1" in res.stdout and "KMP_BLOCKTIME=1" in res.stdout
    assert "(as given" in res.stdout
    assert "global_step = 22" in res.stdout  # the in-training evaluation after one epoch
    assert json.loads((tmp_path / "m" / "train_report.json").read_text())["train_steps"] == 24


@pytest.mark.parametrize("args,needle", [
    (["--use_tpu=True"], "--use_tpu=True"),
    (["--train-steps", 0], "--train-steps 0"),
    (["--model", "vgg16"], "--model vgg16"),
])
def test_bad_flags_are_clear_errors(demo_records, tmp_path, args, needle):
    res = run(["train", "--data-dir", demo_records, "--model-dir", tmp_path / "m", *args])
    assert res.returncode != 0 and needle in res.stderr, res.stderr


def test_missing_and_empty_data_dirs(tmp_path):
    res = run(["train", "--data-dir", tmp_path / "nope", "--model-dir", tmp_path / "m"])
    assert res.returncode != 0 and "nope does not exist" in res.stderr
    (tmp_path / "empty").mkdir()
    res = run(["train", "--data-dir", tmp_path / "empty", "--model-dir", tmp_path / "m"])
    assert res.returncode != 0 and "manifest.json not found" in res.stderr


def test_batch_that_does_not_divide_over_ranks(demo_records, tmp_path):
    res = run(["train", "--data-dir", demo_records, "--model-dir", tmp_path / "m",
               "--train-batch-size", 63, "--model", "resnet18", "--image-size", 32], np=2)
    assert res.returncode != 0
    assert "--train-batch-size 63 (global) does not divide over 2 ranks" in res.stderr
