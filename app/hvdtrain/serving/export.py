"""``hvdtrain export``: a checkpoint as a SavedModel TF Serving loads, with no Horovod inside.

The network is built afresh (``engine.model``, no Horovod in the process's graph: horovod#4028),
the checkpoint's weights are restored into it, and ``engine.serving_graph`` puts
``hvdtrain eval``'s preprocessing and tensorflow/tpu's signature around it. The version is
written under a temporary name and renamed when complete (``exports``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hvdtrain import __version__, atomic
from hvdtrain.cluster import topology
from hvdtrain.data import manifest
from hvdtrain.errors import ConfigError
from hvdtrain.run_dir import RunDir
from hvdtrain.serving import convert, exports
from hvdtrain.serving.config import ExportConfig
from hvdtrain.serving.exports import ExportError
from hvdtrain.training import checkpoint


def class_names(meta: dict) -> list[str]:
    """The checkpoint's class names (index order); checkpoints before this version named none, so
    the manifest the run was trained on is read when it is still there and the same data set."""
    if meta.get("classes"):
        return list(meta["classes"])
    flags = meta.get("flags") or {}
    try:
        man = manifest.load(flags["--data-dir"], flags.get("--manifest"))
        if man.fingerprint() == meta.get("data"):
            return man.class_names()
    except (KeyError, OSError, TypeError, manifest.DataError):
        pass
    return [str(i) for i in range(int(meta["num_classes"]))]


def restore_checkpoint(cfg_model_dir: Path | None, checkpoint_path: Path | None) -> tuple[Path, dict]:
    """The checkpoint to export, checked against the run it is exported for (where both are named)."""
    ckpt_dir, meta = checkpoint.resolve(checkpoint_path or cfg_model_dir)
    named_both = checkpoint_path is not None and cfg_model_dir is not None
    if named_both and RunDir(cfg_model_dir).run_config.is_file():
        run = json.loads(RunDir(cfg_model_dir).run_config.read_text()).get("flags", {})
        mine = checkpoint.model_flags(meta)
        for flag, value in (("--model", mine.model), ("--image-size", mine.image_size)):
            if flag in run and run[flag] != value:
                raise ExportError(f"checkpoint {ckpt_dir} holds {flag} {value} but the run in "
                                  f"{cfg_model_dir} trained {flag} {run[flag]}: pass a checkpoint of "
                                  "that run, or that run's own --model-dir")
    return ckpt_dir, meta


def build_serving_model(rt, ckpt_dir: Path, meta: dict):
    """The restored network behind its serving signatures (``engine.serving_graph``)."""
    from hvdtrain.engine.model import build_resnet
    from hvdtrain.engine.serving_graph import ServingModel

    net_cfg, classes = checkpoint.model_flags(meta), class_names(meta)
    net = build_resnet(net_cfg.model, len(classes), net_cfg.image_size, net_cfg.bn_decay)
    try:
        rt.tf.train.Checkpoint(model=net).read(checkpoint.tf_prefix(ckpt_dir)) \
            .expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, rt.tf.errors.OpError) as exc:
        raise ExportError(f"checkpoint {ckpt_dir} does not fit a {net_cfg.model} at {net_cfg.image_size} px "
                          f"with {len(classes)} classes: {str(exc).splitlines()[0][:300]}") from None
    return ServingModel(net, net_cfg.image_size, net_cfg.centre_crop_padding, classes)


def _check_writable(out: Path) -> None:
    try:
        atomic.ensure_writable_dir(out)
    except OSError as exc:
        raise ExportError(f"--output-dir {out} is not writable ({exc.strerror})") from None


def _eval_top1(model_dir: Path, step: int) -> float | None:
    """The checkpoint's top-1 where the run recorded an evaluation at its step."""
    try:
        res = json.loads(RunDir(model_dir).eval_results.read_text())
    except (OSError, ValueError):
        return None
    return res.get("top1") if res.get("global_step") == step else None


def describe(cfg: ExportConfig, ckpt_dir: Path, meta: dict, version: int) -> dict:
    """export.json: what a person or a client needs to know about this version."""
    net_cfg = checkpoint.model_flags(meta)
    from hvdtrain.engine import serving_graph as sg

    return {"hvdtrain": __version__, "version": version, "checkpoint": str(Path(ckpt_dir).resolve()),
            "step": int(meta["step"]),
            "model": net_cfg.model, "image_size": net_cfg.image_size,
            "crop_padding": net_cfg.centre_crop_padding, "precision": cfg.precision,
            "data_fingerprint": meta.get("data"), "num_classes": int(meta["num_classes"]),
            "classes": class_names(meta), "eval_top1": _eval_top1(cfg.model_dir, int(meta["step"])),
            "signatures": {sg.BYTES_SIGNATURE: {"input": f"{sg.BYTES_INPUT}: string [None]"},
                           sg.TENSOR_SIGNATURE: {"input": f"{sg.TENSOR_INPUT}: float32 [None, "
                                                          f"{net_cfg.image_size}, {net_cfg.image_size}, 3]"},
                           "outputs": list(sg.OUTPUTS)}}


def run_export(cfg: ExportConfig, log=print) -> Path:
    """Write the next version of ``cfg.output_dir``; returns its directory."""
    cfg.check()
    convert.require(cfg.format)  # a missing extra, or bf16 on a CPU without it, before any work
    if cfg.precision == "bf16" and not topology.bf16_supported():
        raise ConfigError(topology.bf16_refusal())
    ckpt_dir, meta = restore_checkpoint(cfg.model_dir, cfg.checkpoint)
    _check_writable(cfg.output_dir)
    from hvdtrain.cluster import runtime

    rt = runtime.start_local(cfg.threads, cfg.precision)
    model = build_serving_model(rt, ckpt_dir, meta)
    version = exports.next_version(cfg.output_dir)
    tmp = cfg.output_dir / f"{atomic.TMP_PREFIX}export-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        log(f"export: {ckpt_dir} (step {meta['step']}) -> {cfg.output_dir / str(version)}, {cfg.precision}")
        model.save(str(tmp))
        info = describe(cfg, ckpt_dir, meta, version)
        from hvdtrain.engine.serving_graph import warmup_records

        (tmp / exports.WARMUP).parent.mkdir(parents=True, exist_ok=True)
        warmup_records(str(tmp / exports.WARMUP), cfg.output_dir.resolve().name, info["image_size"])
        if cfg.format != "savedmodel":
            info["converted"] = convert.convert(cfg.format, tmp, info, log)
        atomic.write_json(tmp / exports.EXPORT_JSON, info)
        final = cfg.output_dir / str(version)
        os.rename(tmp, final)  # fails rather than overwrite, should another export have taken it
        atomic.fsync_dir(cfg.output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"export: wrote {final} (signatures serving_default, predict_tensor; {cfg.format})")
    return final
