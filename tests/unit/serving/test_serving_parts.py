"""The TensorFlow-free parts of export and predict: the export dir's versions, the files predict
reads, the scoring of probabilities, the flags, and the message for a missing extra."""

import json

import numpy as np
import pytest

from hvdtrain.errors import ConfigError
from hvdtrain.serving import convert, exports
from hvdtrain.serving.config import ExportConfig, PredictConfig
from hvdtrain.serving.evaluate import score
from hvdtrain.serving.predict import image_files


def test_versions_are_integer_dirs_in_numeric_order_and_the_next_is_one_higher(tmp_path):
    assert exports.versions(tmp_path / "none") == [] and exports.next_version(tmp_path / "none") == 1
    for name in ("1", "2", "10", ".tmp-export-11-99", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "3").write_text("a file, not a version")
    assert [p.name for p in exports.versions(tmp_path)] == ["1", "2", "10"]
    assert exports.next_version(tmp_path) == 11  # a half-written .tmp-* never counts


def test_resolve_takes_a_version_dir_or_the_newest_version(tmp_path):
    for name in ("1", "2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert exports.resolve(tmp_path).name == "2"
    assert exports.resolve(tmp_path / "1").name == "1"
    with pytest.raises(exports.ExportError, match=f"{tmp_path / 'empty'} holds no export"):
        exports.resolve(tmp_path / "empty")


def test_read_info_names_the_file_when_it_is_missing(tmp_path):
    with pytest.raises(exports.ExportError, match=r"export\.json: not readable"):
        exports.read_info(tmp_path)
    (tmp_path / "export.json").write_text(json.dumps({"step": 3}))
    assert exports.read_info(tmp_path) == {"step": 3}


def test_formats_present_follow_the_files(tmp_path):
    assert exports.formats_present(tmp_path) == ["savedmodel"]
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    assert exports.formats_present(tmp_path) == ["savedmodel", "onnx"]


def test_image_files_reads_directories_recursively_and_refuses_empty_ones(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    (tmp_path / "a" / "b" / "y.png").write_bytes(b"2")
    (tmp_path / "a" / ".hidden").write_bytes(b"3")
    (tmp_path / "empty").mkdir()
    assert image_files([tmp_path / "a"]) == [tmp_path / "a" / "b" / "y.png", tmp_path / "a" / "x.jpg"]
    with pytest.raises(ConfigError, match=f"{tmp_path / 'empty'} is an empty directory"):
        image_files([tmp_path / "a", tmp_path / "empty"])
    with pytest.raises(ConfigError, match="does not exist"):
        image_files([tmp_path / "missing.jpg"])


def test_score_counts_top1_top5_and_loss():
    probs = np.array([[0.7, 0.1, 0.1, 0.05, 0.03, 0.02],   # label 0: top-1
                      [0.1, 0.2, 0.3, 0.15, 0.15, 0.1],    # label 3: top-5, not top-1
                      [0.3, 0.25, 0.2, 0.15, 0.09, 0.01]])  # label 5: neither
    res = score(probs, np.array([0, 3, 5]), seconds=2.0)
    assert (res.top1, res.top5, res.num_images) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 3)
    assert res.loss == pytest.approx(-(np.log(0.7) + np.log(0.15) + np.log(0.01)) / 3)


def test_predict_needs_exactly_one_model():
    with pytest.raises(ConfigError, match="exactly one of --model-dir"):
        PredictConfig().check()
    with pytest.raises(ConfigError, match="exactly one of --model-dir"):
        PredictConfig(model_dir="m", export="e").check()
    with pytest.raises(ConfigError, match="--top-k 0"):
        PredictConfig(export="e", top_k=0)


def test_a_missing_extra_is_named_with_how_to_install_it(monkeypatch):
    monkeypatch.setattr(convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(exports.ExportError,
                       match=r"--format onnx needs tf2onnx, onnxruntime.*hvdtrain\[onnx\]"):
        convert.require("onnx")
    convert.require("savedmodel")  # needs nothing beyond TensorFlow


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_bf16_conversion_is_refused_by_name_before_any_work(fmt, tmp_path):
    cfg = ExportConfig(model_dir=tmp_path / "none", output_dir=tmp_path / "e", format=fmt, precision="bf16")
    with pytest.raises(ConfigError, match=f"--precision bf16 --format {fmt}: the {fmt} converter"):
        cfg.check()
    assert not (tmp_path / "e").exists()
    ExportConfig(model_dir=tmp_path / "m", output_dir=tmp_path / "e", precision="bf16").check()
