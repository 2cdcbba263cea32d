"""Checkpoints: written by rank 0 only, atomically, verified before use.

A checkpoint is the directory ``model_dir/checkpoints/ckpt-<step>/`` holding TensorFlow's files
plus ``meta.json`` (step, model, data fingerprint, sha256 of every file). It is written under a
temporary name and renamed when complete, so a crash mid-save leaves only a ``.tmp-*`` directory,
which is ignored and removed on the next start; the previous checkpoint stays valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import time
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.cluster import faults
from hvdtrain.data import manifest
from hvdtrain.errors import HvdtrainError
from hvdtrain.run_dir import RunDir
from hvdtrain.training.config import ModelFlags

META = "meta.json"
PREFIX = "ckpt"
_NAME = re.compile(r"^ckpt-(\d{8})$")


class CheckpointError(HvdtrainError, RuntimeError):
    pass


def checkpoint_root(model_dir: str | Path) -> Path:
    return RunDir(model_dir).checkpoints


def path_for(model_dir: str | Path, step: int) -> Path:
    """Where step ``step``'s checkpoint is (once saved): the one place the name is spelled."""
    return checkpoint_root(model_dir) / f"ckpt-{step:08d}"


class Checkpointer:
    """The checkpoint cadence: every ``every`` steps or ``every_seconds`` (whichever comes first)
    before the last step (``after_step``), and the last step (``final``). The time is each rank's
    own clock: the ranks agree inside the training step (``time_due`` on any rank saves on all)
    before ``after_step``. ``save(step)`` writes and returns the path (on rank 0; None elsewhere);
    ``record(path)`` tells the run's log; ``pause()`` brackets a save (the watchdog's). ``seconds``
    is the time spent saving, for the report."""

    def __init__(self, save, record, every: int, last_step: int, pause=contextlib.nullcontext,
                 every_seconds: float | None = None, clock=time.monotonic):
        self.save, self.record, self.every, self.last_step, self.pause = save, record, every, last_step, pause
        self.every_seconds, self.clock = every_seconds, clock
        self.saved_at, self.seconds, self.saves = clock(), 0.0, 0

    def due(self, step: int) -> bool:
        return step % self.every == 0 and step < self.last_step

    def time_due(self) -> bool:
        return bool(self.every_seconds) and self.clock() - self.saved_at >= self.every_seconds

    def after_step(self, step: int, by_time: bool = False) -> None:
        if self.due(step) or (by_time and step < self.last_step):
            with self.pause():
                self._save(step)

    def final(self, step: int) -> Path | None:
        return self._save(step)

    def _save(self, step: int) -> Path | None:
        t = self.clock()
        if path := self.save(step):
            self.record(path)
        self.saved_at = self.clock()
        self.seconds, self.saves = self.seconds + self.saved_at - t, self.saves + 1
        return path


def save(model_dir: str | Path, step: int, trackable, meta: dict, keep: int | None = None) -> Path:
    """Write ``trackable`` (a ``tf.train.Checkpoint``) for ``step``; returns the final directory."""
    root = checkpoint_root(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = path_for(model_dir, step)
    if final.is_dir():
        return final  # this step is already saved (periodic save coinciding with the last step)
    tmp = root / f"{atomic.TMP_PREFIX}ckpt-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        trackable.write(str(tmp / PREFIX))
        files = {p.name: manifest.sha256_of(p) for p in sorted(tmp.iterdir())}
        for name in files:
            atomic.fsync_file(tmp / name)
        (tmp / META).write_text(json.dumps({**meta, "step": step, "files": files}, indent=2))
        atomic.fsync_file(tmp / META)
        _before_rename_hook()
        os.rename(tmp, final)
        atomic.fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep:
        for old in list_valid(model_dir, verify=False)[:-keep]:
            shutil.rmtree(old[0], ignore_errors=True)
    return final


def _before_rename_hook() -> None:
    if faults.checkpoint_rename_fails():
        raise CheckpointError("injected failure between checkpoint write and rename")


def read_meta(path: str | Path) -> dict:
    return json.loads((Path(path) / META).read_text())


def model_flags(meta: dict) -> ModelFlags:
    """The network a checkpoint holds, from its meta.json (keys of older versions ignored)."""
    known = {f.name for f in dataclasses.fields(ModelFlags)}
    return ModelFlags(**{k: v for k, v in meta["model"].items() if k in known})


def is_valid(path: Path, verify: bool = True) -> bool:
    try:
        meta = read_meta(path)
    except (OSError, ValueError):
        return False
    files = meta.get("files", {})
    if not files:
        return False
    for name, digest in files.items():
        f = path / name
        if not f.is_file() or (verify and manifest.sha256_of(f) != digest):
            return False
    return True


def list_valid(model_dir: str | Path, verify: bool = True) -> list[tuple[Path, dict]]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(model_dir)
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if _NAME.match(p.name) and p.is_dir() and is_valid(p, verify):
            out.append((p, read_meta(p)))
    return out


def latest(model_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest checkpoint whose files all match their recorded sha256."""
    root = checkpoint_root(model_dir)
    if not root.is_dir():
        return None
    for p in sorted(root.iterdir(), reverse=True):
        if _NAME.match(p.name) and p.is_dir() and is_valid(p):
            return p, read_meta(p)
    return None


def resolve(path: str | Path) -> tuple[Path, dict]:
    """A checkpoint named by the user: its directory, or a model_dir (newest valid one)."""
    p = Path(path)
    if (p / META).is_file():
        if not is_valid(p):
            raise CheckpointError(f"checkpoint {p} is incomplete or corrupt (sha256 mismatch)")
        return p, read_meta(p)
    found = latest(p)
    if not found:
        raise CheckpointError(f"no valid checkpoint in {p} (looked in {checkpoint_root(p)})")
    return found


def remove_partial(model_dir: str | Path) -> list[Path]:
    """Delete ``.tmp-*`` directories left by saves that never finished."""
    root = checkpoint_root(model_dir)
    gone = []
    if root.is_dir():
        for p in root.glob(atomic.TMP_PREFIX + "*"):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


def tf_prefix(path: Path) -> str:
    return str(Path(path) / PREFIX)
