"""The run's attempts: every start of ``hvdtrain train`` on a model dir, and what faults cost.

Rank 0 appends one JSON line to ``M/attempts.jsonl`` when an attempt starts (attempt number,
hosts, step resumed from, time lost since the previous attempt) and one when it ends (its last
step, how it ended). An attempt that died (a lost node, a kill) writes no end line; its last step
and time then come from the ranks' heartbeats, which the next attempt reads before clearing them.

Time lost to a fault = the work redone (steps past the checkpoint resumed from, at the previous
attempt's step time) + the restart (from the previous attempt's end to this one's first step).
Time-to-train counts from the first attempt's start, as MLPerf counts a resumed run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hvdtrain.run_dir import RunDir


def read(model_dir: Path) -> list[dict]:
    """Every line written so far (a torn last line, from a crash mid-write, is skipped)."""
    try:
        text = RunDir(model_dir).attempts.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _append(model_dir: Path, record: dict) -> None:
    with open(RunDir(model_dir).attempts, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _previous(lines: list[dict], beats: list[dict]) -> dict | None:
    """The last attempt as it ended: its end line, or (it died) its last heartbeats."""
    starts = [ln for ln in lines if ln.get("event") == "start"]
    if not starts:
        return None
    start = starts[-1]
    end = next((ln for ln in lines if ln.get("event") == "end" and ln["attempt"] == start["attempt"]), None)
    if end:
        return {**start, "last_step": end["last_step"], "ended": end["time"], "how": end["how"],
                "step_seconds": end.get("step_seconds")}
    mine = [b for b in beats if b.get("time", 0) >= start["time"]]
    return {**start, "last_step": max([b["step"] for b in mine], default=start["resumed_from_step"]),
            "ended": max([b["time"] for b in mine], default=start["time"]), "how": "died",
            "step_seconds": None}


def begin(model_dir: Path, hosts: list[str], num_ranks: int, resumed_from_step: int,
          beats: list[dict], step_seconds: float | None, now: float | None = None) -> dict:
    """Record this attempt's start; returns its line. ``beats``: the previous attempt's heartbeats;
    ``step_seconds``: its seconds per step where known otherwise (the run's history)."""
    lines = read(model_dir)
    prev = _previous(lines, beats)
    now = time.time() if now is None else now
    record = {"event": "start", "attempt": 1 + sum(ln.get("event") == "start" for ln in lines),
              "time": now, "hosts": sorted(set(hosts)), "num_ranks": num_ranks,
              "resumed_from_step": resumed_from_step, "job": _job_id()}
    if prev:
        per_step = prev["step_seconds"] or step_seconds or 0.0
        redone = max(0, prev["last_step"] - resumed_from_step)
        record.update(previous_ended=prev["how"], previous_last_step=prev["last_step"],
                      redone_steps=redone, redone_seconds=round(redone * per_step, 3),
                      restart_seconds=round(max(0.0, now - prev["ended"]), 3),
                      hosts_left_out=sorted(set(prev["hosts"]) - set(hosts)))
    _append(model_dir, record)
    return record


def end(model_dir: Path, attempt: int, last_step: int, how: str, first_step_seconds: float,
        step_seconds: float | None) -> None:
    """Record how this attempt ended; ``first_step_seconds``: from its start to its first step done
    (set-up, counted as restart time when the attempt follows a fault)."""
    _append(model_dir, {"event": "end", "attempt": attempt, "time": time.time(), "last_step": last_step,
                        "how": how, "first_step_seconds": round(first_step_seconds, 3),
                        "step_seconds": step_seconds})


def summary(model_dir: Path, now: float | None = None) -> dict | None:
    """For the report: attempts, the hosts left out, the seconds lost, the wall time from the
    first attempt's start to the last one's end (MLPerf's time-to-train for a resumed run; up to
    ``now`` while one runs) and a line per attempt."""
    lines = read(model_dir)
    starts = [ln for ln in lines if ln.get("event") == "start"]
    if not starts:
        return None
    ends = {ln["attempt"]: ln for ln in lines if ln.get("event") == "end"}
    lost = 0.0
    for s in starts[1:]:
        setup = ends.get(s["attempt"], {}).get("first_step_seconds", 0.0)
        lost += s.get("redone_seconds", 0.0) + s.get("restart_seconds", 0.0) + setup
    ever_left = {h for s in starts for h in s.get("hosts_left_out", [])}
    left_out = sorted(ever_left - set(starts[-1]["hosts"]))
    last_end = ends.get(starts[-1]["attempt"])  # else the run is in progress (or died): up to now
    stop = last_end["time"] if last_end else (time.time() if now is None else now)
    return {"attempts": len(starts), "hosts_left_out": left_out, "seconds_lost_to_faults": round(lost, 3),
            "wall_seconds_since_first_start": round(stop - starts[0]["time"], 3),
            "history": [_line(s, ends.get(s["attempt"])) for s in starts]}


def _line(start: dict, end: dict | None) -> str:
    words = [f"attempt {start['attempt']}: {start['num_ranks']} rank(s) on {','.join(start['hosts'])}",
             f"from step {start['resumed_from_step']}"]
    if start["attempt"] > 1:
        redone, secs = start.get("redone_steps", 0), start.get("redone_seconds", 0)
        words.append(f"after {start.get('previous_ended')} at step {start.get('previous_last_step')}: "
                     f"{redone} step(s) redone ({secs:.0f} s), "
                     f"restart {start.get('restart_seconds', 0):.0f} s")
        if start.get("hosts_left_out"):
            words.append(f"left out {','.join(start['hosts_left_out'])}")
    words.append(f"ended: {end['how']} at step {end['last_step']}" if end else "ended: no end recorded")
    return "; ".join(words)


def _job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID")
