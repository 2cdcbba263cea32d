"""ONNX and OpenVINO copies of an export, converted from its ``predict_tensor`` signature.

Both converters are optional extras (pyproject.toml: ``hvdtrain[onnx]``, ``hvdtrain[openvino]``):
the bytes signature's JPEG decoding is TensorFlow's, so the converted models take the
preprocessed batch, as NVIDIA's and OpenVINO's own ResNet-50 exports do.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from hvdtrain.serving import exports
from hvdtrain.serving.exports import ExportError

EXTRAS = {"onnx": ("hvdtrain[onnx]", ("tf2onnx", "onnxruntime")),
          "openvino": ("hvdtrain[openvino]", ("openvino",))}


def missing(fmt: str) -> list[str]:
    return [m for m in EXTRAS.get(fmt, ("", ()))[1] if importlib.util.find_spec(m) is None]


def require(fmt: str) -> None:
    """Stop with the extra to install when ``fmt``'s packages are not importable."""
    if gone := missing(fmt):
        extra, _ = EXTRAS[fmt]
        raise ExportError(f"--format {fmt} needs {', '.join(gone)}, which are not installed: "
                          f"pip install '{extra}' (or `make install-extras`)")


def convert(fmt: str, version_dir: Path, info: dict, log) -> str:
    """Write ``fmt``'s copy into ``version_dir``; returns its path relative to it."""
    from hvdtrain.engine.serving_graph import TENSOR_SIGNATURE

    rel = {"onnx": exports.ONNX, "openvino": exports.OPENVINO}[fmt]
    out = version_dir / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"export: converting {TENSOR_SIGNATURE} to {fmt} ({out.name})")
    if fmt == "onnx":
        # tf2onnx's command line: its Python API needs the function, its CLI reads the SavedModel.
        res = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(version_dir),
                              "--signature_def", TENSOR_SIGNATURE, "--opset", "17", "--output", str(out)],
                             capture_output=True, text=True)
        if res.returncode != 0 or not out.is_file():
            raise ExportError(f"tf2onnx could not convert {version_dir}: {res.stderr.strip()[-1500:]}")
    else:
        import openvino as ov
        import tensorflow as tf

        loaded = tf.saved_model.load(str(version_dir))  # kept: the signature only refers to its variables
        signature = loaded.signatures[TENSOR_SIGNATURE]

        @tf.function(input_signature=list(signature.structured_input_signature[1].values()))
        def numeric(images):  # OpenVINO's converter takes no string constants: synsets stay in TF
            return {k: v for k, v in signature(images=images).items() if v.dtype != tf.string}

        ov.save_model(ov.convert_model(numeric.get_concrete_function()), str(out))
        del loaded
    return str(rel)
