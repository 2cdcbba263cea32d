"""``hvdtrain index``: a manifest for TFRecord shards that another tool wrote.

Reads top to bottom: find the shards (in DATA_DIR, or in its train/ and validation/ subfolders),
read every one once, in parallel (a process pool per rank; MPI ranks take disjoint shards) for
its record count, sha256, feature keys, label range and synset -> label pairs; check that they
agree (one format, one class map); then rank 0 writes the manifest, at DATA_DIR/manifest.json or
at ``--manifest PATH`` (which records where the shards are, so DATA_DIR may be read-only). The
shards are never written to. The format (``records.FORMATS``) is detected from the records' keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.cluster import topology
from hvdtrain.data import manifest, records
from hvdtrain.data.pool import Comm, gather_results, run_jobs
from hvdtrain.errors import not_a_directory
from hvdtrain.flags import Validated, flag
from hvdtrain.progress import Progress


class IndexingError(manifest.DataError):
    """The directory holds no shards we can read, or shards that disagree with each other."""


@dataclass
class IndexConfig(Validated):
    data_dir: Path  # the positional DATA_DIR
    manifest: Path | None = flag(None, "--manifest",
                                 help="Write the manifest here instead of DATA_DIR/manifest.json "
                                      "(for a read-only DATA_DIR). Pass the same --manifest to "
                                      "verify, train, eval and bench.")
    workers: int | None = flag(None, "--workers", low=1,
                               help="Processes per rank. Default: this rank's cores.")
    progress: bool = flag(True, "--progress/--no-progress", help="Show progress.")


@dataclass
class ShardIndex:
    name: str  # path under DATA_DIR
    split: str
    num_records: int
    sha256: str
    keys: tuple[str, ...]  # feature keys of the first record
    min_label: int
    max_label: int
    synsets: dict[str, int] = field(default_factory=dict)


def index_shard(job: tuple[str, str, str]) -> ShardIndex:
    """Read one shard (in a worker process): count, hash, keys, labels, synsets."""
    import tensorflow as tf

    root, name, split = job
    path = Path(root) / name
    count, keys, fmt, labels, synsets = 0, (), None, [], {}
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            ex = tf.train.Example.FromString(raw).features.feature
            if fmt is None:
                keys = tuple(sorted(ex.keys()))
                fmt = records.detect(keys)
                if fmt is None:
                    raise IndexingError(f"{path}: records keyed {', '.join(keys)} are in no known format "
                                        f"(known: {_known_formats()})")
            if fmt.label not in ex or fmt.encoded not in ex:
                raise IndexingError(f"{path}: record {count + 1} lacks {fmt.label} or {fmt.encoded}")
            label = ex[fmt.label].int64_list.value[0]
            labels.append(label)
            if fmt.synset and fmt.synset in ex:
                wnid = ex[fmt.synset].bytes_list.value[0].decode()
                if synsets.setdefault(wnid, label) != label:
                    raise IndexingError(f"{path}: synset {wnid} has labels {synsets[wnid]} and {label}")
            count += 1
    except tf.errors.OpError as exc:
        raise IndexingError(f"{path}: unreadable after {count} records "
                            f"({exc.message.splitlines()[0]})") from None
    # An empty shard is kept (counted as 0, hashed): tensorflow/tpu's converter writes them.
    return ShardIndex(name, split, count, manifest.sha256_of(path), keys, min(labels, default=0),
                      max(labels, default=0), synsets)


def _known_formats() -> str:
    return "; ".join(f"{f.name}: {f.origin}, keys {f.encoded} + {f.label}" for f in records.FORMATS.values())


def find(data_dir: Path) -> list[tuple[str, str]]:
    """(name under data_dir, split) of every shard, train first, each split sorted by name."""
    found = [(str(p.relative_to(data_dir)), records.shard_split(p.name))
             for p in manifest.find_shards(data_dir)]
    return sorted(found, key=lambda f: (records.SPLITS.index(f[1]), f[0]))


def build_manifest(data_dir: Path, shards: list[ShardIndex]) -> manifest.Manifest:
    """Check the shards agree with each other, then describe them (empty shards say nothing of
    format or labels; each split needs records somewhere)."""
    full = [s for s in shards if s.num_records]
    for split in records.SPLITS:
        if not any(s.split == split for s in full):
            raise IndexingError(f"every {split} shard in {data_dir} is empty "
                                f"({sum(s.split == split for s in shards)} shards, 0 records)")
    formats = {records.detect(s.keys).name: s for s in full}
    if len(formats) > 1:
        raise IndexingError("shards of more than one format: " + ", ".join(
            f"{data_dir / s.name} is {name}" for name, s in formats.items()))
    fmt = records.FORMATS[next(iter(formats))]
    low, high = min(s.min_label for s in full), max(s.max_label for s in full)
    if low < 0:
        raise IndexingError(f"labels in {data_dir} run {low}..{high}: negative labels name no class")
    offset = 0 if low == 0 else fmt.label_offset  # 0 where a tool numbered tpu-keyed classes from 0
    labels: dict[str, int] = {}
    for s in shards:
        for wnid, label in s.synsets.items():
            if labels.setdefault(wnid, label) != label:
                raise IndexingError(f"synset {wnid} has label {labels[wnid]} in one shard and {label} "
                                    f"in {data_dir / s.name}")
    splits = {split: manifest.Split(tuple(manifest.Shard(s.name, s.num_records, s.sha256)
                                          for s in shards if s.split == split))
              for split in records.SPLITS}
    return manifest.Manifest(splits[records.TRAIN], splits[records.VALIDATION], high - offset + 1,
                             labels, data_dir, offset, {"indexed_by": "hvdtrain index"}, fmt.name)


def _check_writable(target: Path, data_dir: Path, chosen: Path | None) -> None:
    """Every rank proves the manifest's folder takes a file (a read-only mount raises here)."""
    try:
        atomic.ensure_writable_dir(target.parent)
    except OSError as exc:
        hint = ("choose a writable --manifest PATH" if chosen else
                f"{data_dir} looks read-only: pass --manifest PATH (a writable place) and the same "
                "--manifest to verify, train, eval and bench")
        raise IndexingError(f"cannot write the manifest {target}: {exc.strerror or exc}; {hint}") from None


def run_index(cfg: IndexConfig, log=print) -> manifest.Manifest:
    start = time.perf_counter()
    comm = Comm()
    data_dir = Path(cfg.data_dir).resolve()
    if not data_dir.is_dir():
        raise IndexingError(not_a_directory("DATA_DIR", cfg.data_dir))
    target = manifest.path_for(data_dir, cfg.manifest)
    _check_writable(target, data_dir, cfg.manifest)  # before hours of reading, not after
    found = find(data_dir)
    missing = [s for s in records.SPLITS if s not in {split for _, split in found}]
    if missing:
        raise IndexingError(f"{data_dir} holds no {' and no '.join(missing)} shards (looked for "
                            f"train-00000-of-01024 or imagenet2012-train.tfrecord-00000-of-01024 "
                            f"style names there and in its train/ and validation/ subfolders)")
    workers = cfg.workers or topology.cores_per_rank()
    mine = [(str(data_dir), name, split) for name, split in found][comm.rank::comm.size]
    if comm.rank == 0:
        n = {s: sum(1 for _, split in found if split == s) for s in records.SPLITS}
        log(f"index: {n['train']} train + {n['validation']} validation shards in {data_dir} "
            f"({comm.size} rank(s) x {workers} worker(s))")
    progress = Progress(len(mine), "index", unit="shards", enabled=cfg.progress and comm.rank == 0)
    try:
        shards = gather_results(comm, lambda: run_jobs(index_shard, mine, workers,
                                                       lambda job: progress.advance(1)), IndexingError)
    finally:
        progress.close()
    order = {name: i for i, (name, _) in enumerate(found)}
    man = build_manifest(data_dir, sorted(shards, key=lambda s: order[s.name]))
    fmt = man.record_format
    if comm.rank == 0:
        manifest.save(target, man)
        log(f"index: format {fmt.name} ({fmt.origin}): keys {fmt.encoded} + {fmt.label}, labels "
            f"{man.label_offset}..{man.label_offset + man.num_classes - 1}, {man.num_classes} classes"
            + (f", {len(man.labels)} synsets" if man.labels else ", no synsets in the records"))
        empty = sum(1 for s in shards if not s.num_records)
        log(f"index: done: {man.train.num_images:,} train + {man.validation.num_images:,} validation "
            f"images in {man.train.num_shards + man.validation.num_shards} shards"
            + (f" ({empty} empty: listed and hashed, never read)" if empty else "") + ", "
            f"{time.perf_counter() - start:.1f} s; wrote {target}")
    comm.barrier()
    return man
