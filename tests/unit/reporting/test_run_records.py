"""What a run writes about itself: the typed records' JSON, the model dir's layout and the flags
kept to say how a run was made (and what changed on a resume)."""

from pathlib import Path

from hvdtrain import flags
from hvdtrain.reporting.results import EvalResult, TargetOutcome, TrainReport
from hvdtrain.run_dir import RunDir
from hvdtrain.training.config import DataFlags, TrainConfig


def _report(**kw) -> TrainReport:
    base = dict(ttt_seconds=1.0, images_per_second=2.0, global_batch_size=8, num_ranks=2, recipe="surfsara",
                train_steps=10, steps_this_run=10, last_step=10, start_step=0, epochs=1.0, final_loss=0.5,
                precision="fp32", skipped_steps=0, model="resnet18", image_size=32, plan={}, threads={},
                rank_weight_checksums={})
    return TrainReport(**{**base, **kw})


def test_eval_result_json_keeps_the_files_keys():
    res = EvalResult(0.9, 1.0, 0.3, 364, 2.0, 182.0, global_step=165)
    assert list(res.to_json()) == ["top1", "top5", "loss", "num_images", "seconds", "images_per_second",
                                   "global_step"]
    assert res.result_line() == "Top-1 accuracy = 0.9, Top-5 accuracy = 1, loss = 0.3, global_step = 165"
    assert EvalResult(0.9, 1.0, 0.3, 364, 2.0, 182.0, 165, "/m/ckpt").to_json()["checkpoint"] == "/m/ckpt"


def test_train_report_json_flattens_the_target_and_nests_the_final_eval():
    plain = _report().to_json()
    assert "target_accuracy" not in plain and "eval" not in plain and plain["best_top1"] is None
    rep = _report(target=TargetOutcome(0.76, True, 44, 4.0, 12.5),
                  eval=EvalResult(0.8, 1.0, 0.3, 364, 2.0, 182.0, global_step=44))
    out = rep.to_json()
    assert (out["target_accuracy"], out["reached_target"], out["steps_to_target"]) == (0.76, True, 44)
    assert out["eval"]["global_step"] == 44 and list(out)[-1] == "eval"


def test_the_model_dir_layout_is_spelled_in_one_place(tmp_path):
    run = RunDir(tmp_path)
    assert run.checkpoints == tmp_path / "checkpoints" and run.report.name == "train_report.json"
    assert run.eval_results.name == "eval_results.json" and run.run_config.name == "run_config.json"
    assert isinstance(RunDir(str(tmp_path)).root, Path)


def test_flags_say_how_a_run_was_made_and_what_a_resume_changed():
    cfg = TrainConfig(model_dir=Path("/m"), data=DataFlags(data_dir=Path("/d")))
    cfg.net.model, cfg.random_flip = "resnet18", False
    values = flags.values(cfg)
    assert values["--model-dir"] == "/m" and values["--seed"] == 0 and values["--random-flip"] is False
    assert flags.changed(cfg) == {"--data-dir": "/d", "--model-dir": "/m", "--model": "resnet18",
                                  "--random-flip": False}
    later = dict(values, **{"--peak-lr": 0.2})
    assert flags.difference(values, later) == ["--peak-lr None -> 0.2"]
