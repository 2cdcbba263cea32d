"""An export dir's layout, known here only (as ``run_dir`` knows a model dir's).

``E/`` of ``hvdtrain export --output-dir E`` is TF Serving's model base path::

    E/1/saved_model.pb, variables/     the SavedModel (signatures serving_default, predict_tensor)
    E/1/assets.extra/tf_serving_warmup_requests
    E/1/export.json                    what was exported: checkpoint, step, size, classes, top-1
    E/1/onnx/model.onnx                with --format onnx
    E/1/openvino/model.xml, model.bin  with --format openvino
    E/2/ ...                           each export a new version; none is ever overwritten

A version is written under a temporary name and renamed when complete, so TF Serving (which
polls E for integer-named dirs) never sees half an export.
"""

from __future__ import annotations

import json
from pathlib import Path

from hvdtrain.errors import HvdtrainError

EXPORT_JSON = "export.json"
WARMUP = Path("assets.extra") / "tf_serving_warmup_requests"
ONNX = Path("onnx") / "model.onnx"
OPENVINO = Path("openvino") / "model.xml"


class ExportError(HvdtrainError, RuntimeError):
    pass


def versions(export_dir: Path) -> list[Path]:
    """The complete versions of an export dir, oldest first (integer names only, as TF Serving)."""
    if not Path(export_dir).is_dir():
        return []
    found = [p for p in Path(export_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def next_version(export_dir: Path) -> int:
    have = versions(export_dir)
    return int(have[-1].name) + 1 if have else 1


def resolve(path: Path) -> Path:
    """A version dir named by the user: the dir itself when it holds a SavedModel, else the newest
    version of the export dir."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    have = versions(path)
    if not have:
        raise ExportError(f"{path} holds no export (no saved_model.pb, and no numbered version dirs); "
                          "make one with `hvdtrain export --model-dir M --output-dir E`")
    return have[-1]


def read_info(version_dir: Path) -> dict:
    path = Path(version_dir) / EXPORT_JSON
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not readable ({exc}); was {version_dir} written by `hvdtrain export`?") \
            from None


def formats_present(version_dir: Path) -> list[str]:
    found = ["savedmodel"]
    found += [name for name, rel in (("onnx", ONNX), ("openvino", OPENVINO)) if (version_dir / rel).is_file()]
    return found
