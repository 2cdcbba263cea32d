"""A progress watchdog: no step for ``timeout`` seconds ends the process, and so the MPI job.

Horovod's stall check runs in its background thread, which itself blocks inside MPI when a peer
is frozen (SIGSTOP, a dead NFS mount, a wedged node); then nothing ever reports. This thread
does not talk to MPI: when the training loop stops making progress it prints why and exits
non-zero, and mpirun takes the other ranks down. Paused around long, step-free work (saves,
evaluation) and armed only after the first step (graph tracing can take minutes).

To say *which* rank is at fault without MPI, every rank's thread also writes a heartbeat file
(``<model_dir>/.heartbeats/rank-NNNNN``: time, step, host, pid) from the moment the watchdog is
made (so a rank frozen within its first steps has a file to go stale) and every ``timeout/10``
seconds after. A frozen or dead process stops writing; the rank whose watchdog fires names the
ranks whose heartbeat went stale, else the ones behind the others. Ranks whose node does not share
the model dir have no file here; the message says so rather than blaming the network.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


class Watchdog:
    def __init__(self, timeout: float, rank: int, size: int = 1, heartbeat_dir: Path | None = None,
                 exit_code: int = 70, netbeat=None):
        self.timeout, self.rank, self.size, self.exit_code = timeout, rank, size, exit_code
        self.heartbeat_dir = heartbeat_dir
        self.netbeat = netbeat  # ``netbeat.NetBeat``: liveness over the job's network (rank 0 listens)
        self.beat_every = max(1.0, timeout / 10)
        self._last = None  # None: not armed
        self._paused = 0
        self._stop = threading.Event()
        self._step = 0  # last step finished
        self._in_step = False  # inside the step function (compute, allreduce) rather than between steps
        if timeout > 0:
            self._beat()  # before the thread: a rank frozen in its first steps must have a file
            threading.Thread(target=self._watch, name="hvdtrain-watchdog", daemon=True).start()

    def entering_step(self) -> None:
        self._in_step = True

    def kick(self, step: int) -> None:
        """``step`` finished."""
        self._step, self._in_step, self._last = step, False, time.monotonic()

    @contextmanager
    def step(self, step: int):
        """Around one training step: inside it a rank waits in the step's collectives."""
        self.entering_step()
        yield
        self.kick(step)

    @contextmanager
    def paused(self):
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            if self._last is not None:
                self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        if self.netbeat is not None:
            self.netbeat.stop()
        if self.heartbeat_dir is not None:
            (self.heartbeat_dir / _name(self.rank)).unlink(missing_ok=True)

    def _watch(self) -> None:
        next_beat = time.monotonic() + self.beat_every
        while not self._stop.wait(min(1.0, self.timeout / 4)):
            now = time.monotonic()
            if now >= next_beat:  # alive, armed or not (graph tracing is not a stall)
                self._beat()
                next_beat = now + self.beat_every
            last = self._last
            if last is None or self._paused:
                continue
            idle = now - last
            if idle > self.timeout:
                sys.stderr.write(
                    f"hvdtrain: error (rank {self.rank}): no training step finished for {idle:.0f} s "
                    f"after step {self._step} (--stall-timeout {self.timeout:g}); {self._culprits()}. "
                    f"Stopping the job; rerun to resume from the last checkpoint.\n")
                sys.stderr.flush()
                os._exit(self.exit_code)

    def _beat(self) -> None:
        if self._stop.is_set():
            return
        if self.netbeat is not None:
            self.netbeat.send(self._step)
        if self.heartbeat_dir is None:
            return
        # The model dir may not be on this node, or full: the watchdog still works without.
        with contextlib.suppress(OSError):
            write_heartbeat(self.heartbeat_dir, self.rank, self._step, self._in_step)

    def _culprits(self) -> str:
        """Which ranks are at fault, from the heartbeat files this rank can see: those that stopped
        beating (frozen, dead), else those that never entered the step the others wait in."""
        if self.heartbeat_dir is None:
            return "a rank is stalled or dead"
        beats = read_heartbeats(self.heartbeat_dir, self.size)
        beats = [b for b in beats if b["rank"] != self.rank] + [self._own_beat()]
        stale = stale_ranks(beats, time.time(), max(3 * self.beat_every, self.timeout / 2))
        if stale:
            return "; ".join(f"{_who(b)} has not been heard from for {age:.0f} s (its last heartbeat came "
                             f"after step {b['step']}): frozen, dead or cut off" for b, age in stale)
        if self.netbeat is not None and (silent := self.netbeat.describe_silent(
                max(3 * self.beat_every, self.timeout / 2))):
            return silent
        behind = lagging_ranks(beats)
        if behind:
            return "; ".join(_lag(b) for b in behind)
        unseen = sorted(set(range(self.size)) - {b["rank"] for b in beats})
        if unseen:
            return (f"every rank visible here is alive and at the same point; no heartbeat is visible from "
                    f"{_ranks(unseen)} (their node does not share --model-dir, or they never started), "
                    f"so look there first, then at the network")
        return ("every rank is alive and at the same point, so the job is stuck inside a "
                "collective (network or MPI trouble)")

    def _own_beat(self) -> dict:
        return _beat_record(self.rank, self._step, self._in_step)


def _name(rank: int) -> str:
    return f"rank-{rank:05d}"


def _ranks(ranks: list[int]) -> str:
    shown = ", ".join(map(str, ranks[:8])) + (f" and {len(ranks) - 8} more" if len(ranks) > 8 else "")
    return f"rank{'s' if len(ranks) > 1 else ''} {shown}"


def _who(beat: dict) -> str:
    return f"rank {beat['rank']} (host {beat['host']}, pid {beat['pid']})"


def _lag(beat: dict) -> str:
    if beat.get("in_step"):
        return (f"{_who(beat)} is alive but stuck inside step {beat['step'] + 1}, which other ranks "
                f"have finished (its own compute or update)")
    return (f"{_who(beat)} finished step {beat['step']} and is alive but stuck outside the training "
            f"step (reading input, I/O, a hung call) while other ranks wait in step {beat['step'] + 1}")


def _beat_record(rank: int, step: int, in_step: bool) -> dict:
    return {"rank": rank, "step": step, "in_step": in_step, "time": time.time(),
            "host": socket.gethostname(), "pid": os.getpid()}


def write_heartbeat(directory: Path, rank: int, step: int, in_step: bool = False) -> None:
    """Small and frequent: a rename without fsync (a lost beat only delays the diagnosis)."""
    directory.mkdir(exist_ok=True)
    final = directory / _name(rank)
    tmp = directory / f".{_name(rank)}.{os.getpid()}"
    tmp.write_text(json.dumps(_beat_record(rank, step, in_step)))
    os.replace(tmp, final)


def read_heartbeats(directory: Path, size: int) -> list[dict]:
    beats = []
    for rank in range(size):
        try:
            beats.append(json.loads((directory / _name(rank)).read_text()))
        except (OSError, ValueError):
            continue  # not visible from here (another node's disk) or mid-replace
    return beats


def read_all_heartbeats(directory: Path) -> list[dict]:
    """Every rank's last beat in ``directory`` (an earlier attempt's, of any size)."""
    beats = []
    for path in sorted(Path(directory).glob("rank-*")):
        try:
            beats.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return beats


def stale_ranks(beats: list[dict], now: float, older_than: float) -> list[tuple[dict, float]]:
    """(heartbeat, age) of every rank whose last beat is older than ``older_than`` seconds."""
    return [(b, now - b["time"]) for b in beats if now - b["time"] > older_than]


def lagging_ranks(beats: list[dict]) -> list[dict]:
    """Ranks behind the others: not yet inside the step that the furthest rank is in."""
    def progress(b):
        return 2 * b["step"] + bool(b.get("in_step"))
    if not beats:
        return []
    ahead = max(map(progress, beats))
    return [b for b in beats if progress(b) < ahead]
