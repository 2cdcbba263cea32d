"""Check the shards a job will read before it reads them, and agree on the result across ranks.

A flipped byte or a truncated shard must stop training and evaluation with the shard's name, never
let them run silently on fewer images. Each rank hashes a disjoint share of the split's shards
against the manifest's sha256 (cheap: 1/N of the data each); the findings are allgathered so every
rank takes the same decision: stop, or — with ``skip_corrupt`` — drop the same shards and say so.
"""

from __future__ import annotations

import copy
from pathlib import Path

from . import manifest


class CorruptData(manifest.DataError):
    pass


def check_shard(path: Path, expected: dict) -> str | None:
    """The problem with one shard, or None when it matches the manifest."""
    if not path.is_file():
        return "missing"
    if manifest.sha256_of(path) != expected["sha256"]:
        return "sha256 differs from the manifest (corrupt, truncated or replaced)"
    return None


def corrupt_record(rank: int, split: str, data_dir, exc) -> CorruptData:
    """The error for a record that fails to read mid-run (a TFRecord CRC or length mismatch)."""
    return CorruptData(f"rank {rank}: corrupt record in its {split} shards "
                       f"({exc.message.splitlines()[0]}); run `hvdtrain verify {data_dir}`")


def usable_manifest(rt, data_dir, man: dict, split: str, skip_corrupt: bool = False) -> dict:
    """The manifest to run with: unchanged when every shard of ``split`` is intact."""
    shards = man[split]["shards"]
    mine = [(i, s) for i, s in enumerate(shards) if i % rt.size == rt.rank]
    found = [(i, s["name"], why) for i, s in mine if (why := check_shard(Path(data_dir) / s["name"], s))]
    gathered = rt.hvd.allgather_object(found) if rt.size > 1 else [found]
    bad = sorted(item for per_rank in gathered for item in per_rank)
    if not bad:
        return man
    listing = "; ".join(f"{Path(data_dir) / name}: {why}" for _, name, why in bad)
    if not skip_corrupt:
        raise CorruptData(f"{len(bad)} {split} shard(s) do not match {data_dir}/manifest.json: "
                          f"{listing}. Re-run `hvdtrain prep` to repair them (or pass "
                          f"--skip-corrupt-shards to leave them out).")
    dropped = {i for i, _, _ in bad}
    out = copy.deepcopy(man)
    kept = [s for i, s in enumerate(shards) if i not in dropped]
    lost = sum(s["num_records"] for i, s in enumerate(shards) if i in dropped)
    if not kept:
        raise CorruptData(f"every {split} shard is corrupt: {listing}")
    out[split]["shards"] = kept
    out[split]["num_shards"] = len(kept)
    out[split]["num_images"] = man[split]["num_images"] - lost
    rt.log(f"WARNING: skipping {len(bad)} corrupt {split} shard(s) ({listing}); "
           f"{lost} of {man[split]['num_images']} images left out")
    return out
