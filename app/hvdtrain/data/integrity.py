"""Check the shards a job will read before it reads them, and agree on the result across ranks.

A flipped byte or a truncated shard must stop training and evaluation with the shard's name, never
let them run silently on fewer images. Each rank hashes a disjoint share of the split's shards
against the manifest's sha256 (cheap: 1/N of the data each); the findings are allgathered so every
rank takes the same decision: stop, or — with ``skip_corrupt`` — drop the same shards and say so.
"""

from __future__ import annotations

from pathlib import Path

from hvdtrain.data import manifest


class CorruptData(manifest.DataError):
    pass


def check_shard(path: Path, expected: manifest.Shard) -> str | None:
    """The problem with one shard, or None when it matches the manifest."""
    if not path.is_file():
        return "missing"
    if manifest.sha256_of(path) != expected.sha256:
        return "sha256 differs from the manifest (corrupt, truncated or replaced)"
    return None


def corrupt_record(rank: int, split: str, data_dir, exc) -> CorruptData:
    """The error for a record that fails to read mid-run (a TFRecord CRC or length mismatch)."""
    return CorruptData(f"rank {rank}: corrupt record in its {split} shards "
                       f"({exc.message.splitlines()[0]}); run `hvdtrain verify {data_dir}`")


def usable_manifest(rt, man: manifest.Manifest, split: str,
                    skip_corrupt: bool = False) -> manifest.Manifest:
    """The manifest to run with: unchanged when every shard of ``split`` is intact."""
    shards = man.split(split).shards
    mine = [(i, s) for i, s in enumerate(shards) if i % rt.size == rt.rank]
    found = [(i, s.name, why) for i, s in mine if (why := check_shard(man.shard_dir / s.name, s))]
    gathered = rt.hvd.allgather_object(found) if rt.size > 1 else [found]
    bad = sorted(item for per_rank in gathered for item in per_rank)
    if not bad:
        return man
    listing = "; ".join(f"{man.shard_dir / name}: {why}" for _, name, why in bad)
    if not skip_corrupt:
        raise CorruptData(f"{len(bad)} {split} shard(s) do not match their manifest: "
                          f"{listing}. Re-run `hvdtrain prep` to repair them (or pass "
                          f"--skip-corrupt-shards to leave them out).")
    out = man.without_shards(split, {name for _, name, _ in bad})
    if not out.split(split).shards:
        raise CorruptData(f"every {split} shard is corrupt: {listing}")
    lost = man.split(split).num_images - out.split(split).num_images
    rt.log(f"WARNING: skipping {len(bad)} corrupt {split} shard(s) ({listing}); "
           f"{lost} of {man.split(split).num_images} images left out")
    return out
