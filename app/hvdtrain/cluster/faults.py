"""Fault injection for the fault tests: every hook hvdtrain honours, in one place.

Each hook is an environment variable, read when the run starts, so a test can hurt a real
``mpirun`` job without patching code. Tests import these names instead of repeating the strings.
Unset, every hook is inert (and the NaN hook is not even traced into the step).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

NAN_AT_STEP = "HVDTRAIN_INJECT_NAN_AT_STEP"        # "K": the loss of global step K is NaN
STALL = "HVDTRAIN_INJECT_STALL"                    # "RANK:STEP": that rank hangs before that step
FAIL_BEFORE_CKPT_RENAME = "HVDTRAIN_FAIL_BEFORE_CKPT_RENAME"  # "1": a save dies before its rename
STEP_DELAY = "HVDTRAIN_INJECT_STEP_DELAY"          # "S": each step of a fresh (not resumed) run is S s late


@dataclass(frozen=True)
class Faults:
    nan_at_step: int = 0      # 0: off
    stall_rank: int = -1      # -1: off
    stall_step: int = 0
    step_delay: float = 0.0   # 0: off

    def maybe_stall(self, rank: int, step: int) -> None:
        """A rank stuck in I/O or on a bad node: alive, beating, never entering the step. Or every
        step late: a first attempt long enough for a time limit to fall in it, at a few steps'
        cost, whose resumed attempt then runs at full speed."""
        if rank == self.stall_rank and step == self.stall_step:
            time.sleep(1e6)
        if self.step_delay:
            time.sleep(self.step_delay)


def from_env(resumed: bool = False) -> Faults:
    rank, _, step = os.environ.get(STALL, "-1:0").partition(":")
    return Faults(int(os.environ.get(NAN_AT_STEP, "0")), int(rank), int(step or 0),
                  0.0 if resumed else float(os.environ.get(STEP_DELAY, "0")))


def checkpoint_rename_fails() -> bool:
    return os.environ.get(FAIL_BEFORE_CKPT_RENAME) == "1"
