"""``OUT/manifest.json``: what prep wrote, and what every later step checks against.

Schema (DESIGN.md §2): ``{"train": {"num_images", "num_shards", "shards": [{"name",
"num_records", "sha256"}]}, "validation": {...}, "num_classes", "label_offset", "labels"}``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import atomic
from .records import LABEL_OFFSET, SPLITS

MANIFEST = "manifest.json"
SKIPPED = "skipped.txt"


class DataError(RuntimeError):
    """The data directory is missing, incomplete or does not match what is expected."""


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load(data_dir: str | Path) -> dict:
    path = Path(data_dir) / MANIFEST
    if not Path(data_dir).is_dir():
        raise DataError(f"data dir {data_dir} does not exist")
    if not path.is_file():
        raise DataError(f"{path} not found: is {data_dir} the output of `hvdtrain prep`? "
                        f"(an interrupted prep leaves no manifest; re-run it to resume)")
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("num_classes", "labels", *SPLITS):
        if key not in man:
            raise DataError(f"{path} has no '{key}' entry")
    man.setdefault("label_offset", LABEL_OFFSET)
    return man


def save(data_dir: str | Path, man: dict) -> None:
    atomic.write_json(Path(data_dir) / MANIFEST, man)


def shard_paths(data_dir: str | Path, man: dict, split: str) -> list[Path]:
    return [Path(data_dir) / s["name"] for s in man[split]["shards"]]


def shard_counts(man: dict, split: str) -> list[int]:
    return [int(s["num_records"]) for s in man[split]["shards"]]


def fingerprint(man: dict) -> str:
    """Identity of a data set for resume checks: class map and the shards' hashes."""
    ident = {"labels": man["labels"], "label_offset": man.get("label_offset", LABEL_OFFSET),
             **{s: [sh["sha256"] for sh in man[s]["shards"]] for s in SPLITS}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
