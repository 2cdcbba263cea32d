"""Write files so that a reader sees the old version or the complete new one, never a part.

Everything hvdtrain writes that another step trusts (shards, manifest, checkpoints, reports) goes
through here: write to a temporary name in the same directory, fsync, rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path beside ``final``; rename it over ``final`` only if the block succeeds."""
    final = Path(final)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + final.name + ".", dir=final.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared data set from others
    os.close(fd)
    try:
        yield Path(tmp)
        fsync_file(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(final: str | os.PathLike, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_json(final: str | os.PathLike, obj) -> None:
    write_bytes(final, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    # some filesystems refuse fsync on directories; the rename is still atomic
    with contextlib.suppress(OSError):
        fsync_file(path)


def ensure_writable_dir(directory: str | os.PathLike) -> None:
    """Create ``directory`` and prove a file can be written in it (raises OSError otherwise), so a
    job fails at start rather than at its first save."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Not TMP_PREFIX: prep's rank 0 sweeps .tmp-* while other ranks may still be probing.
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
        pass


def write_failure(target: str | os.PathLike, exc: BaseException, where: str) -> str:
    """One line for a failed write (full disk, read-only dir), from an OSError or a TF error."""
    text = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
    return f"cannot write {target}: {text} (disk full or {where} not writable?)"


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete leftovers of interrupted writes (files named by ``atomic_path``)."""
    removed = []
    for p in Path(directory).glob(TMP_PREFIX + "*"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
