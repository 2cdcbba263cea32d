"""``curves.png``: a run's loss, LR, images/s and eval top-1 against epochs, for a person to read.

Drawn by rank 0 at every checkpoint and at the end (``events``), and by ``hvdtrain report`` from
``history.json``. matplotlib's Agg backend: no display needed on a compute node.
"""

from __future__ import annotations

from pathlib import Path

from hvdtrain import atomic


def draw(history, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = history.info
    steps, evals = history.steps, history.evals
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    panels = (
        (axes[0][0], "training loss (cross-entropy)", [(s["epoch"], s["loss"]) for s in steps], "C0"),
        (axes[0][1], "learning rate", [(s["epoch"], s["lr"]) for s in steps], "C1"),
        (axes[1][0], "images/s (global)",
         [(s["epoch"], s["images_per_second"]) for s in steps if s.get("images_per_second")], "C2"),
        (axes[1][1], "eval top-1", [(e["epoch"], e["top1"]) for e in evals], "C3"),
    )
    for ax, title, points, color in panels:
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=color, marker="o" if len(xs) < 30 else None, markersize=3)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    top1 = axes[1][1]
    if info.get("target_accuracy"):
        top1.axhline(info["target_accuracy"], color="grey", linestyle="--",
                     label=f"target {info['target_accuracy']:.3f}")
        top1.legend(loc="lower right")
    if evals:
        best = max(evals, key=lambda e: e["top1"])
        top1.annotate(f"{best['top1']:.4f}", (best["epoch"], best["top1"]),
                      textcoords="offset points", xytext=(-10, -14), ha="right")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    fig.suptitle(" · ".join(str(v) for v in (info.get("title"), info.get("subtitle")) if v))
    fig.tight_layout()
    with atomic.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
