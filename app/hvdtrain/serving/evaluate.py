"""``hvdtrain eval --export E``: an exported model over every validation image, exactly once.

The SavedModel gets each record's encoded bytes through ``serving_default`` (its own in-graph
preprocessing is what is scored); the ONNX and OpenVINO copies get ``hvdtrain eval``'s
preprocessed batch. One process: an export is what runs on a workstation.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from hvdtrain.data import manifest
from hvdtrain.reporting.results import EvalResult
from hvdtrain.serving import exports
from hvdtrain.serving.models import Model


def predictions(rt, model: Model, man: manifest.Manifest, batch: int):
    """(probabilities [N, C], labels [N]) for the validation split, in record order."""
    from hvdtrain.data import records
    from hvdtrain.engine import input_pipeline

    tf = rt.tf
    files = [str(p) for p in man.paths(records.VALIDATION)]
    fmt, offset = man.record_format, man.label_offset
    ds = input_pipeline.rank_records(files, 0, 1).map(
        lambda s: records.parse_for_training(s, fmt, offset))
    if model.encoded is None:
        size, pad = model.image_size, model.crop_padding
        ds = ds.map(lambda enc, label: (input_pipeline.eval_preprocess(enc, size, pad), label),
                    num_parallel_calls=tf.data.AUTOTUNE)
    probs, labels = [], []
    for inputs, label in ds.batch(batch).prefetch(tf.data.AUTOTUNE):
        probs.append(model.encoded(inputs)["probabilities"] if model.encoded
                     else model.tensor(inputs.numpy()))
        labels.append(label.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def score(probs: np.ndarray, labels: np.ndarray, seconds: float) -> EvalResult:
    k = min(5, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top1 = float(np.mean(top[:, 0] == labels))
    top5 = float(np.mean((top == labels[:, None]).any(axis=1)))
    loss = float(np.mean(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12))))
    n = len(labels)
    return EvalResult(top1, top5, loss, n, round(seconds, 3), round(n / seconds, 2))


def run_export_eval(cfg, exported) -> EvalResult:
    """``cfg``: ``hvdtrain eval``'s EvalConfig (data, batch, threads); ``exported``: its
    ExportEvalFlags (which export, which form)."""
    from hvdtrain.cluster import runtime
    from hvdtrain.serving import models

    version_dir = exports.resolve(exported.export)
    info = exports.read_info(version_dir)
    man = manifest.load(cfg.data.data_dir, cfg.data.manifest)
    if info["num_classes"] != man.num_classes:
        raise manifest.DataError(f"export {version_dir} has {info['num_classes']} classes but "
                                 f"{cfg.data.data_dir} has {man.num_classes}")
    rt = runtime.start_local(cfg.threads, info["precision"])
    model = models.from_export(rt, version_dir, exported.format)
    same = info.get("data_fingerprint") == man.fingerprint()
    note = "" if same else " (not the data set it was trained on)"
    rt.log(f"eval: export {version_dir} ({model.label}, step {info['step']}, {info['model']} @ "
           f"{info['image_size']}px, centre crop padding {info['crop_padding']}) on "
           f"{man.validation.num_images} images{note}, batch {cfg.eval_batch_size}")
    start = time.perf_counter()
    probs, labels = predictions(rt, model, man, cfg.eval_batch_size)
    res = score(probs, labels, time.perf_counter() - start)
    if res.num_images != man.validation.num_images:
        raise RuntimeError(f"evaluation scored {res.num_images} images but the manifest lists "
                           f"{man.validation.num_images}")
    res = replace(res, global_step=int(info["step"]), checkpoint=str(version_dir))
    rt.log(res.result_line())
    return res
