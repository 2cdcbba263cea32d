"""The model dir's layout, known here only (as ``data/manifest.py`` knows the data dir's).

``M/`` of ``hvdtrain train --model-dir M``::

    run_config.json      the resolved config and plan of the run (rewritten at each start)
    checkpoints/ckpt-00000150/   verified, atomic checkpoints (training/checkpoint.py)
    train_report.json    the run's TrainReport; eval_results.json: the last EvalResult
    attempts.jsonl       a line as each attempt starts and ends (reporting/attempts.py)
    history.json, curves.png     loss, LR, images/s and evaluations against epochs
    mlperf.log           MLPerf's log (rank 0), train/: TensorBoard
    .heartbeats/         one file per rank (the watchdog's), .hvdtrain-run: the shared-dir check
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_config(self) -> Path:
        return self.root / "run_config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def report(self) -> Path:
        return self.root / "train_report.json"

    @property
    def eval_results(self) -> Path:
        return self.root / "eval_results.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def mlperf_log(self) -> Path:
        return self.root / "mlperf.log"

    @property
    def tensorboard(self) -> Path:
        return self.root / "train"

    @property
    def heartbeats(self) -> Path:
        return self.root / ".heartbeats"

    @property
    def attempts(self) -> Path:
        return self.root / "attempts.jsonl"

    @property
    def shared_token(self) -> Path:
        return self.root / ".hvdtrain-run"
