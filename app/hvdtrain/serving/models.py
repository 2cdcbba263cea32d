"""Every form a trained model takes, behind one call: the checkpoint (built in process), the
SavedModel, and its ONNX and OpenVINO copies. predict, the evaluation of an export and its
benchmark use these, so each form is scored and timed by the same code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hvdtrain.serving import exports
from hvdtrain.serving.exports import ExportError


@dataclass
class Model:
    """``tensor(batch)`` -> probabilities for a preprocessed float32 batch [N, S, S, 3];
    ``encoded(list of bytes)`` -> the serving outputs as numpy (TensorFlow forms only)."""

    form: str  # checkpoint | savedmodel | onnx | openvino
    image_size: int
    crop_padding: int
    classes: list[str]
    precision: str
    tensor: object
    encoded: object = None
    owner: object = None  # what the calls need alive (a loaded SavedModel's variables)

    @property
    def label(self) -> str:
        return f"{self.form} {self.precision}"


def _numpy(outputs: dict) -> dict:
    return {k: v.numpy() for k, v in outputs.items()}


def from_checkpoint(rt, model_dir: Path, checkpoint_path: Path | None = None) -> Model:
    from hvdtrain.serving.export import build_serving_model, restore_checkpoint

    ckpt_dir, meta = restore_checkpoint(model_dir, checkpoint_path)
    sm = build_serving_model(rt, ckpt_dir, meta)
    names = [n.decode() for n in sm.class_names.numpy()]
    return Model("checkpoint", sm.image_size, sm.crop_padding, names, rt.precision,
                 tensor=lambda x: sm.predict_tensor(x)["probabilities"].numpy(),
                 encoded=lambda blobs: _numpy(sm.serving_default(rt.tf.constant(blobs, rt.tf.string))),
                 owner=sm)


def from_export(rt, version_dir: Path, form: str = "savedmodel") -> Model:
    """One form of an export version (``form`` one of ``exports.formats_present``)."""
    info = exports.read_info(version_dir)
    size, pad, classes = info["image_size"], info["crop_padding"], info["classes"]
    precision = info["precision"]
    if form not in exports.formats_present(version_dir):
        raise ExportError(f"{version_dir} has no {form} copy (it has "
                          f"{', '.join(exports.formats_present(version_dir))}); export with --format {form}")
    if form == "savedmodel":
        from hvdtrain.engine.serving_graph import BYTES_SIGNATURE, TENSOR_SIGNATURE

        loaded = rt.tf.saved_model.load(str(version_dir))
        by_bytes, by_tensor = loaded.signatures[BYTES_SIGNATURE], loaded.signatures[TENSOR_SIGNATURE]
        return Model(form, size, pad, classes, precision,
                     tensor=lambda x: by_tensor(images=rt.tf.convert_to_tensor(x))["probabilities"].numpy(),
                     encoded=lambda blobs: _numpy(by_bytes(rt.tf.constant(blobs, rt.tf.string))),
                     owner=loaded)
    from hvdtrain.serving import convert

    convert.require(form)
    if form == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(version_dir / exports.ONNX), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return Model(form, size, pad, classes, precision,
                     tensor=lambda x: session.run(["probabilities"], {name: np.asarray(x, np.float32)})[0])
    import openvino as ov

    # OpenVINO computes in bf16 by default on CPUs with AMX: pin the export's own precision, so
    # an fp32 export scores and is timed as fp32 (the bf16 speed is a bf16 export's to claim)
    hint = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    compiled = ov.Core().compile_model(str(version_dir / exports.OPENVINO), "CPU", hint)
    probs = compiled.output("probabilities")
    return Model(form, size, pad, classes, precision,
                 tensor=lambda x: compiled(np.asarray(x, np.float32))[probs])
