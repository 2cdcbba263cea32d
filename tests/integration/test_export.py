"""`hvdtrain export`, `predict`, `eval --export` and `bench --eval --export` on the shared demo model
(no extra training): the SavedModel loads where only TensorFlow is, scores the validation set as
`hvdtrain eval` scores the checkpoint, image by image; its ONNX and OpenVINO copies agree."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BIN, cli_env, run
from hvdtrain.cluster import topology

pytestmark = pytest.mark.integration

# A process that imports TensorFlow only: what a TF Serving client or another team's code has.
TF_ONLY = r"""
import json, sys
import tensorflow as tf
version, records = sys.argv[1], sys.argv[2]
man = json.load(open(records + "/manifest.json"))
files = [records + "/" + s["name"] for s in man["validation"]["shards"] if s["num_records"] > 0]
serve = tf.saved_model.load(version).signatures["serving_default"]
spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
argmax, labels = [], []
for batch in tf.data.TFRecordDataset(files).batch(64):
    ex = tf.io.parse_example(batch, spec)
    out = serve(input=ex["image/encoded"])
    argmax += out["classes"].numpy().tolist()
    labels += (ex["image/class/label"].numpy() - man["label_offset"]).tolist()
foreign = sorted(m for m in sys.modules if m.split(".")[0] in ("hvdtrain", "horovod"))
print(json.dumps({"argmax": argmax, "labels": labels, "foreign": foreign}))
"""

# The checkpoint scored as `hvdtrain eval` scores it (its input pipeline, its network), per image.
CHECKPOINT = r"""
import json, sys
from hvdtrain.cluster import runtime
from hvdtrain.cluster.topology import ThreadFlags
from hvdtrain.data import manifest
from hvdtrain.training import checkpoint
rt = runtime.start_local(ThreadFlags())
from hvdtrain.engine import input_pipeline
from hvdtrain.engine.model import build_resnet
ckpt, meta = checkpoint.resolve(sys.argv[1])
flags = checkpoint.model_flags(meta)
man = manifest.load(sys.argv[2])
net = build_resnet(flags.model, man.num_classes, flags.image_size, flags.bn_decay)
rt.tf.train.Checkpoint(model=net).read(checkpoint.tf_prefix(ckpt)).expect_partial()
ds, _ = input_pipeline.eval_dataset(man, 0, 1, 200, flags.image_size, flags.centre_crop_padding)
out = []
for images, labels, mask in ds:
    best = rt.tf.argmax(net(images, training=False), -1).numpy()
    out += [int(b) for b, m in zip(best, mask.numpy()) if m > 0]
print(json.dumps(out))
"""

# Every form of an export version through hvdtrain's own loaders, per image.
FORMS = r"""
import json, sys
from pathlib import Path
from hvdtrain.cluster import runtime
from hvdtrain.cluster.topology import ThreadFlags
from hvdtrain.data import manifest
from hvdtrain.serving import evaluate, exports, models
rt = runtime.start_local(ThreadFlags())
man = manifest.load(sys.argv[2])
out = {}
for form in exports.formats_present(Path(sys.argv[1])):
    model = models.from_export(rt, Path(sys.argv[1]), form)
    model.encoded = None  # the preprocessed batch, which every form takes
    probs, _ = evaluate.predictions(rt, model, man, 100)
    out[form] = probs.argmax(axis=1).tolist()
print(json.dumps(out))
"""


def _python(code: str, *args, timeout: float = 600) -> object:
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=cli_env())
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _tree_digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _top1_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("Top-1 accuracy"))


@pytest.fixture(scope="module")
def exported(demo_model, tmp_path_factory):
    """The demo model exported once with its ONNX copy: E/1."""
    model_dir, _ = demo_model
    out = tmp_path_factory.mktemp("export") / "E"
    res = run(["export", "--model-dir", model_dir, "--output-dir", out, "--format", "onnx"], check=True)
    assert f"wrote {out / '1'}" in res.stdout
    return model_dir, out


def test_the_export_loads_with_tensorflow_alone_and_scores_like_eval(exported, demo_records):
    model_dir, out = exported
    seen = _python(TF_ONLY, out / "1", demo_records)
    assert seen["foreign"] == [], "the SavedModel pulled in " + ", ".join(seen["foreign"])
    reference = _python(CHECKPOINT, model_dir, demo_records)
    assert len(seen["argmax"]) == len(reference) == 364
    differ = [i for i, (a, b) in enumerate(zip(seen["argmax"], reference, strict=True)) if a != b]
    assert differ == [], f"images whose class differs between export and checkpoint: {differ}"
    top1 = sum(a == b for a, b in zip(seen["argmax"], seen["labels"], strict=True)) / len(reference)
    recorded = json.loads((model_dir / "eval_results.json").read_text())["top1"]
    assert top1 == pytest.approx(recorded, abs=1e-6)
    # hvdtrain's own eval of the export prints the checkpoint eval's line, loss included
    ckpt = run(["eval", "--data-dir", demo_records, "--model-dir", model_dir], check=True)
    exp = run(["eval", "--data-dir", demo_records, "--export", out], check=True)
    assert _top1_line(exp.stdout) == _top1_line(ckpt.stdout)


def test_saved_model_cli_shows_both_signatures_with_their_types(exported):
    _, out = exported
    res = subprocess.run([str(BIN / "saved_model_cli"), "show", "--dir", str(out / "1"), "--all"],
                         capture_output=True, text=True, timeout=300, env=cli_env())
    assert res.returncode == 0, res.stderr[-2000:]
    text = res.stdout
    for sig, key, dtype, shape in (("serving_default", "input", "DT_STRING", "(-1)"),
                                   ("predict_tensor", "images", "DT_FLOAT", "(-1, 32, 32, 3)")):
        block = text.split(f"signature_def['{sig}']")[1].split("signature_def[")[0]
        assert f"inputs['{key}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" in block, block
        for name, dt, shp in (("probabilities", "DT_FLOAT", "(-1, 10)"), ("classes", "DT_INT64", "(-1)"),
                              ("top_k_classes", "DT_INT64", "(-1, 5)"),
                              ("top_k_probabilities", "DT_FLOAT", "(-1, 5)"),
                              ("synsets", "DT_STRING", "(-1)")):
            want = f"outputs['{name}'] tensor_info:\n        dtype: {dt}\n        shape: {shp}"
            assert want in block, block
    assert (out / "1" / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    info = json.loads((out / "1" / "export.json").read_text())
    assert (info["step"], info["image_size"], info["crop_padding"], info["num_classes"]) == (165, 32, 4, 10)
    assert info["classes"][3] == "n00000003" and info["eval_top1"] is not None


def test_a_second_export_is_version_2_and_the_converted_copies_agree(exported, demo_records):
    model_dir, out = exported
    before = _tree_digest(out / "1")
    run(["export", "--model-dir", model_dir, "--output-dir", out, "--format", "openvino"], check=True)
    assert _tree_digest(out / "1") == before
    assert sorted(p.name for p in out.iterdir()) == ["1", "2"]  # nothing temporary left
    forms = {**_python(FORMS, out / "1", demo_records), **{
        k: v for k, v in _python(FORMS, out / "2", demo_records).items() if k == "openvino"}}
    assert set(forms) == {"savedmodel", "onnx", "openvino"}
    for form in ("onnx", "openvino"):
        differ = sum(a != b for a, b in zip(forms[form], forms["savedmodel"], strict=True))
        assert differ <= 1, f"{form}: {differ} of 364 images classed differently from the SavedModel"


def test_predict_reads_jpeg_png_and_grayscale_and_names_a_corrupt_file(exported, demo_raw, tmp_path):
    from PIL import Image

    _, out = exported
    jpeg = sorted((demo_raw / "validation").iterdir())[0]
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.jpg").write_bytes(jpeg.read_bytes())
    Image.open(jpeg).save(tmp_path / "in" / "sub" / "b.png")
    Image.open(jpeg).convert("L").save(tmp_path / "in" / "sub" / "c.jpg")
    (tmp_path / "in" / "sub" / "d.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    res = run(["predict", tmp_path / "in", "--export", out, "--json"])
    assert res.returncode == 1 and "1 of the files named could not be read" in res.stderr
    lines = {Path(d["file"]).name: d for d in map(json.loads, res.stdout.strip().splitlines())}
    assert set(lines) == {"a.jpg", "b.png", "c.jpg", "d.jpg"}
    assert "Invalid JPEG data" in lines["d.jpg"]["error"]
    best = {name: d["top_k"][0]["class"] for name, d in lines.items() if "top_k" in d}
    assert len(set(best.values())) == 1, best  # the same digit however it is encoded
    assert len(lines["a.jpg"]["top_k"]) == 5 and lines["a.jpg"]["top_k"][0]["synset"].startswith("n0000")
    (tmp_path / "empty").mkdir()
    res = run(["predict", tmp_path / "empty", "--export", out])
    assert res.returncode == 1 and f"{tmp_path / 'empty'} is an empty directory" in res.stderr


def test_export_refuses_what_it_cannot_export_by_path(exported, tmp_path):
    model_dir, _ = exported
    res = run(["export", "--model-dir", tmp_path / "no-run", "--output-dir", tmp_path / "E"])
    assert res.returncode == 1 and f"no valid checkpoint in {tmp_path / 'no-run'}" in res.stderr
    (tmp_path / "file").write_text("")
    res = run(["export", "--model-dir", model_dir, "--output-dir", tmp_path / "file" / "E"])
    assert res.returncode == 1 and f"--output-dir {tmp_path / 'file' / 'E'} is not writable" in res.stderr
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "run_config.json").write_text(json.dumps({"flags": {"--model": "resnet18", "--image-size": 64}}))
    ckpt = sorted((model_dir / "checkpoints").iterdir())[-1]
    res = run(["export", "--model-dir", other, "--checkpoint", ckpt, "--output-dir", tmp_path / "E"])
    assert res.returncode == 1 and f"checkpoint {ckpt} holds --image-size 32" in res.stderr
    assert not (tmp_path / "E").exists() or not any((tmp_path / "E").iterdir())
    assert "Traceback" not in res.stderr


def test_bench_times_every_form_beside_the_checkpoint(exported):
    _, out = exported
    res = run(["bench", "--eval", "--export", out, "--batch-size", 4, "--steps", 2, "--windows", 1,
               "--warmup", 1, "--json"], check=True)
    rows = {r["name"]: r for r in json.loads(res.stdout.strip().splitlines()[-1])["rows"]}
    assert {"checkpoint", "1/savedmodel", "1/onnx"} <= set(rows), rows
    for r in rows.values():
        assert r["images_per_second"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0


def test_a_bf16_export_scores_within_one_image_of_fp32(exported, demo_records, tmp_path):
    model_dir, out = exported
    bf16 = tmp_path / "E16"
    if not topology.bf16_supported():  # refused by name, as training refuses it, and nothing written
        res = run(["export", "--model-dir", model_dir, "--output-dir", bf16, "--precision", "bf16"])
        assert res.returncode == 1 and topology.bf16_refusal() in res.stderr, res.stderr
        assert not bf16.exists()
        pytest.skip(f"bf16 accuracy not measured: {topology.bf16_refusal('--precision bf16')}")
    run(["export", "--model-dir", model_dir, "--output-dir", bf16, "--precision", "bf16"], check=True)
    fp32 = _python(TF_ONLY, out / "1", demo_records)
    half = _python(TF_ONLY, bf16 / "1", demo_records)
    hits = [sum(a == b for a, b in zip(r["argmax"], r["labels"], strict=True)) for r in (fp32, half)]
    assert abs(hits[0] - hits[1]) <= 1, hits
