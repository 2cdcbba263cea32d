"""The typed records a run leaves: ``EvalResult`` (eval_results.json, every evaluation) and
``TrainReport`` (train_report.json). Their JSON keys are the files' documented keys; readers
outside Python (and older runs' files) see the same layout as before the records were typed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class EvalResult:
    """Top-1/Top-5 over every validation image exactly once."""

    top1: float
    top5: float
    loss: float
    num_images: int
    seconds: float
    images_per_second: float
    global_step: int | None = None
    checkpoint: str | None = None  # the checkpoint scored (eval, and a run's final evaluation)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not (k == "checkpoint" and v is None)}

    def result_line(self) -> str:
        """The seed's closing line, e.g. ``Top-1 accuracy = 0.75232, Top-5 accuracy = 0.9241, ...``."""
        return (f"Top-1 accuracy = {self.top1:.5g}, Top-5 accuracy = {self.top5:.5g}, "
                f"loss = {self.loss:.5g}, global_step = {self.global_step}")


@dataclass
class TargetOutcome:
    """``--target-accuracy``: whether and when the run reached it (MLPerf's time-to-train)."""

    target_accuracy: float
    reached_target: bool
    steps_to_target: int | None
    epochs_to_target: float | None
    time_to_target_seconds: float | None


@dataclass
class TrainReport:
    """What ``hvdtrain train`` did: speed, plan, the ranks' agreement, evaluations, the target."""

    ttt_seconds: float
    images_per_second: float | None
    global_batch_size: int
    num_ranks: int
    recipe: str
    train_steps: int
    steps_this_run: int
    last_step: int
    start_step: int
    epochs: float
    final_loss: float
    precision: str
    skipped_steps: int
    model: str
    image_size: int
    plan: dict
    threads: dict
    rank_weight_checksums: dict
    checkpoint_seconds: float = 0.0  # spent saving, this attempt
    checkpoint_share: float = 0.0    # of ttt_seconds
    stopped_by: str | None = None    # the signal that ended this attempt early (saved; exit 75)
    attempts: dict | None = None     # reporting/attempts.summary: attempts, hosts left out, time lost
    evaluations: list = field(default_factory=list)
    best_top1: float | None = None
    target: TargetOutcome | None = None
    eval: EvalResult | None = None  # the final evaluation, when the run made one

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("target", "eval")}
        if self.target:
            out.update(asdict(self.target))
        if self.eval:
            out["eval"] = self.eval.to_json()
        return out
