"""``hvdtrain report M`` and ``hvdtrain recipes``: what a run did, and what a recipe would do.

``summarize`` reads ``M/train_report.json`` and ``M/history.json`` (a run still in progress has
only the latter) and redraws ``M/curves.png``; ``compare_recipes`` lays the recipes' plans for one
global batch side by side (ImageNet-1K by default). Neither loads TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

from hvdtrain.data.manifest import DataError
from hvdtrain.reporting import attempts, curves, events
from hvdtrain.run_dir import RunDir
from hvdtrain.training import recipes
from hvdtrain.training.config import ScheduleFlags, make_plan
from hvdtrain.training.schedule import lr


def summarize(model_dir: Path) -> dict:
    model_dir = Path(model_dir)
    history = events.History.load(model_dir)
    try:
        rep = json.loads(RunDir(model_dir).report.read_text())
    except OSError:
        rep = None
    except ValueError as exc:
        raise DataError(f"{RunDir(model_dir).report} is not valid JSON: {exc}") from None
    if rep is None and not history.steps:
        raise DataError(f"{model_dir} holds neither {RunDir(model_dir).report.name} nor "
                        f"{RunDir(model_dir).history.name}: "
                        f"is it the --model-dir of `hvdtrain train`?")
    best = max(history.evals, key=lambda e: e["top1"]) if history.evals else None
    last = history.steps[-1] if history.steps else None
    out = {"model_dir": str(model_dir), "finished": rep is not None,
           "title": history.info.get("title"), "subtitle": history.info.get("subtitle"),
           "epochs": last["epoch"] if last else None,
           "training_seconds": last["seconds"] if last else None,
           "best_top1": best["top1"] if best else None, "best_top1_epoch": best["epoch"] if best else None,
           "evaluations": len(history.evals)}
    if rep:
        plan = rep.get("plan", {})
        out.update(recipe=rep.get("recipe"), images_per_second=rep.get("images_per_second"),
                   epochs=round(rep.get("last_step", rep["train_steps"]) * plan["global_batch"]
                                / plan["num_train_images"], 3) if plan else out["epochs"])
        for key in ("target_accuracy", "reached_target", "epochs_to_target", "time_to_target_seconds"):
            if key in rep:
                out[key] = rep[key]
    made = _run_config(model_dir)
    if made:
        words = ["hvdtrain", made.get("command", "train"), *_flag_words(made.get("changed", {}))]
        out["made_with"] = " ".join(words)
        out["num_ranks"] = made.get("num_ranks")
    out["attempts"] = attempts.summary(model_dir)
    if history.steps or history.evals:
        out["curves"] = str(curves.draw(history, RunDir(model_dir).curves))
    return out


def _run_config(model_dir: Path) -> dict | None:
    try:
        return json.loads(RunDir(model_dir).run_config.read_text())
    except (OSError, ValueError):
        return None  # a run of an earlier version, or one that never started


def _flag_words(changed: dict) -> list[str]:
    """``{--flag: value}`` as a command line (a True switch alone, a False one as --no-...)."""
    words = []
    for k, v in changed.items():
        if isinstance(v, bool):
            words.append(k if v else "--no-" + k.removeprefix("--"))
        else:
            words += [k, str(v)]
    return words


def render(s: dict) -> str:
    lines = [f"run: {s['model_dir']} ({'finished' if s['finished'] else 'in progress or stopped'})"]
    if s.get("title"):
        lines.append(f"  {s['title']}; {s.get('subtitle')}")
    if s.get("epochs") is not None:
        secs = s.get("training_seconds")
        lines.append(f"  trained {s['epochs']:.2f} epochs" + (f" in {secs:,.1f} s" if secs else "")
                     + (f", {s['images_per_second']:,.1f} images/s" if s.get("images_per_second") else ""))
    if s.get("best_top1") is not None:
        lines.append(f"  best top-1 {s['best_top1']:.4f} at epoch {s['best_top1_epoch']:.2f} "
                     f"({s['evaluations']} evaluation(s))")
    if s.get("target_accuracy") is not None:
        if s.get("reached_target"):
            lines.append(f"  target {s['target_accuracy']} reached at epoch {s['epochs_to_target']:.2f}, "
                         f"time-to-train {s['time_to_target_seconds']:,.1f} s")
        else:
            lines.append(f"  target {s['target_accuracy']} not reached")
    if s.get("made_with"):
        lines.append(f"  made with: {s['made_with']} ({s.get('num_ranks')} rank(s))")
    if (att := s.get("attempts")) and att["attempts"] > 1:
        left = f"; hosts left out: {', '.join(att['hosts_left_out'])}" if att["hosts_left_out"] else ""
        lines.append(f"  attempts: {att['attempts']}; time-to-train from the first start "
                     f"{att['wall_seconds_since_first_start']:,.1f} s, of which lost to faults "
                     f"{att['seconds_lost_to_faults']:,.1f} s{left}")
        lines += [f"    {line}" for line in att["history"]]
    if s.get("curves"):
        lines.append(f"  curves: {s['curves']}")
    return "\n".join(lines)


def compare_recipes(global_batch: int, images: int = recipes.IMAGENET_TRAIN_IMAGES) -> str:
    """Every recipe's plan at ``global_batch`` on ``images`` training images, side by side."""
    plans = [make_plan(ScheduleFlags(train_batch_size=global_batch, recipe=name), images, 1)
             for name in recipes.NAMES]
    width = 30

    def row(label: str, values) -> str:
        return f"{label:<30}" + "".join(f"{v:<{width}}" for v in values)

    def lr_at(p, frac):
        step = round(frac * p.train_steps)
        return f"{lr(p.lr_schedule, step, p.base_lr, p.peak_lr, p.warmup_steps, p.train_steps):.4g}"

    out = [f"recipes for {images:,} training images at global batch {global_batch:,}:",
           row("", [p.recipe for p in plans]),
           row("optimizer", [p.optimizer + (f" (eta {p.lars_eta:g})" if p.optimizer == "lars" else "")
                             for p in plans]),
           row("momentum / weight decay", [f"{p.momentum:.4g} / {p.weight_decay:g}" for p in plans]),
           row("label smoothing", [f"{p.label_smoothing:g}" for p in plans]),
           row("LR schedule", [f"{p.lr_schedule}: {p.base_lr:g} -> {p.peak_lr:.4g} -> {p.end_lr:g}"
                               for p in plans]),
           row("epochs (schedule length)", [f"{p.epochs:.1f}" for p in plans]),
           row("steps (warm-up)", [f"{p.train_steps:,} ({p.warmup_steps:,})" for p in plans]),
           row("epochs to target", ["90 (75.2% top-1, the seed)" if p.recipe == "surfsara" else
                                    f"{p.expected_epochs:.1f} (RCP mean, 75.9%)" for p in plans])]
    for frac in (0.25, 0.5, 0.75, 1.0):
        out.append(row(f"LR at {frac:.0%} of the steps", [lr_at(p, frac) for p in plans]))
    seed_epochs = 90.0
    for p in plans:
        if p.expected_epochs:
            out.append(f"{p.recipe}: {p.recipe_source}; {seed_epochs / p.expected_epochs:.2f}x fewer "
                       f"epochs to target than surfsara's {seed_epochs:g} (the seed's)")
    return "\n".join(out)
