"""``hvdtrain predict``: the top-k classes of image files, from an export or a checkpoint.

Files go to the model as their encoded bytes (``serving_default``: the eval preprocessing in the
graph). A batch the decoder refuses is retried file by file, so one unreadable file is named and
the others are still predicted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hvdtrain.errors import ConfigError
from hvdtrain.serving.config import PredictConfig


@dataclass
class Prediction:
    path: Path
    top: list[tuple[int, str, float]] | None = None  # (class index, name, probability), best first
    error: str | None = None

    def to_json(self) -> dict:
        if self.error:
            return {"file": str(self.path), "error": self.error}
        return {"file": str(self.path), "top_k": [{"class": c, "synset": s, "probability": round(p, 6)}
                                                  for c, s, p in self.top]}

    def line(self) -> str:
        if self.error:
            return f"{self.path}: ERROR {self.error}"
        return f"{self.path}: " + ", ".join(f"{s} ({c}) {p:.4f}" for c, s, p in self.top)


def image_files(paths: list[Path]) -> list[Path]:
    """Files named, and every file under a directory named (recursively, hidden ones left out)."""
    out = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise ConfigError(f"{p} is an empty directory: no images to predict")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"{p} does not exist")
    return out


def _top(probs, names: list[str], k: int) -> list[tuple[int, str, float]]:
    order = probs.argsort(kind="stable")[::-1][:k]
    return [(int(i), names[i], float(probs[i])) for i in order]


def _reason(exc) -> str:
    """The decoder's own words from TensorFlow's error (e.g. "Invalid JPEG data, size 11")."""
    lines = [ln.strip() for ln in getattr(exc, "message", str(exc)).splitlines()]
    noise = ("Graph execution", "Detected at node", "<stack", "[[")
    said = [ln for ln in lines if ln and not ln.startswith(noise)]
    return said[-1][:200] if said else "undecodable"


def predict_files(model, files: list[Path], batch: int, k: int, tf_errors):
    """Yield a Prediction per file, in order, ``batch`` files per call."""
    for i in range(0, len(files), batch):
        chunk = files[i:i + batch]
        blobs = [f.read_bytes() for f in chunk]
        try:
            probs = model.encoded(blobs)["probabilities"]
            yield from (Prediction(f, _top(p, model.classes, k)) for f, p in zip(chunk, probs, strict=True))
        except tf_errors as exc:
            if len(chunk) == 1:
                yield Prediction(chunk[0], error=f"not a readable image ({_reason(exc)})")
            else:
                for f in chunk:
                    yield from predict_files(model, [f], 1, k, tf_errors)


def run_predict(cfg: PredictConfig, inputs: list[Path], emit) -> int:
    """Predict every file; ``emit(prediction)`` shows each. Returns how many files failed."""
    cfg.check()
    if not inputs:
        raise ConfigError("name at least one image file or directory")
    files = image_files(inputs)
    from hvdtrain.cluster import runtime
    from hvdtrain.serving import exports, models

    if cfg.export is not None:
        version_dir = exports.resolve(cfg.export)
        rt = runtime.start_local(cfg.threads, exports.read_info(version_dir)["precision"])
        model = models.from_export(rt, version_dir)
    else:
        rt = runtime.start_local(cfg.threads)
        model = models.from_checkpoint(rt, cfg.model_dir)
    failed = 0
    for pred in predict_files(model, files, cfg.batch_size, min(cfg.top_k, len(model.classes)),
                              (rt.tf.errors.InvalidArgumentError,)):
        failed += pred.error is not None
        emit(pred)
    return failed


def as_json_line(pred: Prediction) -> str:
    return json.dumps(pred.to_json())
