"""``hvdtrain prep``: a raw ImageNet-style tree -> class-shuffled TFRecord shards + manifest.

Reads top to bottom: scan the tree and assign labels (sorted wnids -> 1..N), shuffle the training
list with a fixed seed (the seed document: unshuffled classes cost 2-3% top-1), cut both lists
into balanced shards, convert shards in parallel (a process pool per rank; MPI ranks take
disjoint shards), each shard written under a temporary name and renamed when complete, then rank 0
writes the manifest. Shards already complete from an earlier run (same inputs, same sha256) are
skipped, so an interrupted prep resumes. The output is the same whatever the worker/rank count.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.cluster import topology
from hvdtrain.data import manifest, records
from hvdtrain.data.images import BadImage, normalise
from hvdtrain.data.pool import Comm, gather_results, run_jobs
from hvdtrain.errors import HvdtrainError, not_a_directory
from hvdtrain.flags import REQUIRED, Validated, flag
from hvdtrain.progress import Progress

STATE_DIR = ".prep-state"  # per-shard completion notes, removed once the manifest is written
FORMAT_VERSION = 1  # bump when the bytes prep writes for the same input change


class PrepError(HvdtrainError, RuntimeError):
    """Bad input or unwritable output; the message names the file or flag."""


@dataclass(frozen=True)
class Item:
    path: str  # relative to the raw data dir
    synset: str
    label: int  # 1..N


@dataclass
class PrepConfig(Validated):
    raw_data_dir: Path = flag(REQUIRED, "--raw-data-dir", "--raw_data_dir",
                              help="Raw tree: train/<wnid>/* and validation/*.")
    output_dir: Path = flag(REQUIRED, "--output-dir", "--local-scratch-dir", "--local_scratch_dir",
                            help="Where shards and manifest go.")
    validation_labels: Path | None = flag(
        None, "--validation-labels", "--validation_labels",
        help="One wnid per line, aligned with sorted validation/* (default "
             "RAW/validation_labels.txt, else RAW/synset_labels.txt as tensorflow/tpu names it; "
             "not needed with validation/<wnid>/).")
    train_shards: int = flag(1024, "--train-shards", "--train_shards", help="Number of training shards.")
    validation_shards: int = flag(128, "--validation-shards", "--validation_shards",
                                  help="Number of validation shards.")
    seed: int = flag(0, "--seed", help="Seed of the training-list shuffle (mixes classes).")
    workers: int | None = flag(None, "--workers", low=1,
                               help="Processes per rank. Default: this rank's cores.")
    skip_bad: bool = flag(False, "--skip-bad", "--skip_bad",
                          help="Skip unreadable images and list them in OUT/skipped.txt.")
    overwrite: bool = flag(False, "--overwrite",
                           help="Write into an output dir that holds files an earlier prep did not "
                                "write (e.g. another tool's shards), replacing same-named ones.")
    progress: bool = flag(True, "--progress/--no-progress", help="Show progress.")


@dataclass
class ShardResult:
    name: str
    num_records: int
    sha256: str
    inputs: str  # digest of the shard's planned input list
    skipped: list = field(default_factory=list)  # [{"file", "reason"}]
    reencoded: int = 0


# --------------------------------------------------------------------------------------- scan
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


# hvdtrain's demo and older tools write the first; tensorflow/tpu's imagenet_to_gcs.py reads the second.
LABELS_FILES = ("validation_labels.txt", "synset_labels.txt")


def _labels_file(raw: Path) -> Path:
    """The raw tree's validation labels file (the first of LABELS_FILES that exists)."""
    return next((raw / n for n in LABELS_FILES if (raw / n).is_file()), raw / LABELS_FILES[0])


def scan(raw: Path, validation_labels: Path | None) -> tuple[list[str], list[Item], list[Item]]:
    """Find classes and images; labels are 1..N in sorted-wnid order (tensorflow/tpu's rule)."""
    train_dir = raw / "train"
    if not raw.is_dir():
        raise PrepError(not_a_directory("--raw-data-dir", raw))
    if not train_dir.is_dir():
        raise PrepError(f"{train_dir} not found: --raw-data-dir must hold train/<wnid>/*")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise PrepError(f"{train_dir} has no class folders (expected train/<wnid>/*)")
    label_of = {wnid: k + 1 for k, wnid in enumerate(classes)}
    train = []
    for wnid in classes:
        files = _image_files(train_dir / wnid)
        if not files:
            raise PrepError(f"class folder {train_dir / wnid} is empty")
        train += [Item(str(f.relative_to(raw)), wnid, label_of[wnid]) for f in files]

    val_dir = raw / "validation"
    if not val_dir.is_dir():
        raise PrepError(f"{val_dir} not found: --raw-data-dir must hold validation/")
    subdirs = sorted(p for p in val_dir.iterdir() if p.is_dir())
    validation = []
    if subdirs:  # validation/<wnid>/*
        for d in subdirs:
            if d.name not in label_of:
                raise PrepError(f"validation class folder {d} is not a training class")
            validation += [Item(str(f.relative_to(raw)), d.name, label_of[d.name])
                           for f in _image_files(d)]
        validation.sort(key=lambda it: Path(it.path).name)
    else:  # validation/* + one wnid per line, aligned with the sorted file names
        files = _image_files(val_dir)
        labels_file = validation_labels or _labels_file(raw)
        if not labels_file.is_file():
            raise PrepError(f"validation labels file {labels_file} not found (looked for "
                            f"{' and '.join(LABELS_FILES)} in {raw}; pass --validation-labels, or "
                            f"use validation/<wnid>/ folders)")
        wnids = [ln.strip() for ln in labels_file.read_text().splitlines() if ln.strip()]
        if len(wnids) != len(files):
            raise PrepError(f"{labels_file} has {len(wnids)} labels but {val_dir} has "
                            f"{len(files)} images; they must match line for file")
        for lineno, (f, wnid) in enumerate(zip(files, wnids, strict=True), start=1):
            if wnid not in label_of:
                raise PrepError(f"{labels_file}:{lineno}: '{wnid}' is not a training class")
            validation.append(Item(str(f.relative_to(raw)), wnid, label_of[wnid]))
    if not validation:
        raise PrepError(f"{val_dir} holds no images")
    return classes, train, validation


# ------------------------------------------------------------------------------------ shards
def shuffled(items: list[Item], seed: int) -> list[Item]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def split_balanced(items: list, num_shards: int) -> list[list]:
    """Contiguous shards whose sizes differ by at most one (no empty trailing shards)."""
    base, extra = divmod(len(items), num_shards)
    out, start = [], 0
    for i in range(num_shards):
        size = base + (1 if i < extra else 0)
        out.append(items[start:start + size])
        start += size
    return out


def inputs_digest(items: list[Item], skip_bad: bool) -> str:
    h = hashlib.sha256(json.dumps([FORMAT_VERSION, skip_bad, [asdict(i) for i in items]]).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ShardJob:
    raw: str
    out: str
    name: str
    items: tuple
    skip_bad: bool

    @property
    def digest(self) -> str:
        return inputs_digest(list(self.items), self.skip_bad)


def write_shard(job: ShardJob) -> ShardResult:
    """Convert one shard; the file appears under its final name only when complete."""
    import tensorflow as tf  # in the worker process: the parent never loads TF for prep

    raw, final = Path(job.raw), Path(job.out) / job.name
    skipped, reencoded, count = [], 0, 0
    try:
        with atomic.atomic_path(final) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for item in job.items:
                src = raw / item.path
                try:
                    img = normalise(src.read_bytes(), str(src))
                except (BadImage, OSError) as exc:
                    bad = exc if isinstance(exc, BadImage) else \
                        BadImage(str(src), f"unreadable ({exc.strerror})")
                    if not job.skip_bad:
                        raise PrepError(f"{bad} (use --skip-bad to skip such files)") from None
                    skipped.append({"file": item.path, "reason": bad.reason})
                    continue
                reencoded += bool(img.reencoded)
                writer.write(records.encode(records.ImageRecord(
                    img.jpeg, item.label, item.synset, img.height, img.width, Path(item.path).name)))
                count += 1
    except (OSError, tf.errors.OpError) as exc:  # the source side is handled above: this is output
        raise PrepError(atomic.write_failure(final, exc, "output dir")) from None
    result = ShardResult(job.name, count, manifest.sha256_of(final), job.digest, skipped, reencoded)
    atomic.write_json(Path(job.out) / STATE_DIR / (job.name + ".json"), asdict(result))
    return result


def _already_done(job: ShardJob, known: dict[str, dict]) -> ShardResult | None:
    """A shard from an earlier run counts only if its inputs and its bytes are unchanged."""
    note = known.get(job.name)
    path = Path(job.out) / job.name
    if not note or note.get("inputs") != job.digest or not path.is_file():
        return None
    if manifest.sha256_of(path) != note["sha256"]:
        return None
    return ShardResult(**{k: note[k] for k in ShardResult.__dataclass_fields__ if k in note})


def _own_manifest(out: Path) -> dict | None:
    """OUT/manifest.json if an earlier prep wrote it (its shards carry prep's input digests)."""
    try:
        old = json.loads((out / manifest.MANIFEST).read_text())
        shards = [s for split in records.SPLITS for s in old[split]["shards"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return old if "seed" in old and all("inputs" in s for s in shards) else None


def _known_shards(out: Path) -> dict[str, dict]:
    """Shards an earlier prep wrote here: from its manifest and its per-shard notes."""
    known = {}
    if old := _own_manifest(out):
        known = {s["name"]: s for split in records.SPLITS for s in old[split]["shards"]}
    for note in (out / STATE_DIR).glob("*.json") if (out / STATE_DIR).is_dir() else []:
        with contextlib.suppress(ValueError):  # a half-written note: redo that shard
            known[note.stem] = json.loads(note.read_text())
    return known


def foreign_files(out: Path) -> list[str]:
    """What ``out`` holds that no earlier prep wrote: prep must not overwrite it unasked."""
    if not out.is_dir():
        return []
    own = set(_known_shards(out)) | {STATE_DIR, manifest.SKIPPED}
    if _own_manifest(out):
        own.add(manifest.MANIFEST)
    return sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                  if p.name not in own and not p.name.startswith((atomic.TMP_PREFIX, ".write-test-")))


# ----------------------------------------------------------------------------------- driver
def run_prep(cfg: PrepConfig, log=print) -> manifest.Manifest:
    """Run prep for this rank (all of it when not under mpirun); returns the manifest."""
    start = time.perf_counter()
    comm = Comm()
    raw, out = Path(cfg.raw_data_dir).resolve(), Path(cfg.output_dir).resolve()
    classes, train, validation = scan(raw, cfg.validation_labels)
    for name, n, items in (("--train-shards", cfg.train_shards, train),
                           ("--validation-shards", cfg.validation_shards, validation)):
        if n < 1 or n > len(items):
            raise PrepError(f"{name} {n} must be between 1 and the number of images ({len(items)})")
    if foreign := foreign_files(out):
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        if not cfg.overwrite:
            raise PrepError(f"output dir {out} holds {len(foreign)} file(s) that no earlier "
                            f"`hvdtrain prep` wrote there: {listed}. prep would overwrite same-named "
                            f"ones; choose another --output-dir, or pass --overwrite (for another "
                            f"tool's shards, `hvdtrain index {out}` trains on them as they are)")
        if comm.rank == 0:
            log(f"prep: --overwrite: {out} holds {len(foreign)} file(s) prep did not write "
                f"({listed}); same-named ones will be replaced")
    try:
        atomic.ensure_writable_dir(out)
        (out / STATE_DIR).mkdir(exist_ok=True)
    except OSError as exc:
        raise PrepError(f"output dir {out} is not writable: {exc}") from None
    if comm.rank == 0:
        atomic.remove_stale_temporaries(out)  # leftovers of an interrupted run
    comm.barrier()

    plan = {records.TRAIN: split_balanced(shuffled(train, cfg.seed), cfg.train_shards),
            records.VALIDATION: split_balanced(validation, cfg.validation_shards)}
    jobs = [ShardJob(str(raw), str(out), records.shard_name(split, i, len(shards)), tuple(items),
                     cfg.skip_bad)
            for split, shards in plan.items() for i, items in enumerate(shards)]
    mine = jobs[comm.rank::comm.size]
    known = _known_shards(out)
    done_before = {j.name: r for j in mine if (r := _already_done(j, known))}
    todo = [j for j in mine if j.name not in done_before]
    workers = cfg.workers or topology.cores_per_rank()
    if comm.rank == 0:
        log(f"prep: {len(train)} train + {len(validation)} validation images, {len(classes)} classes "
            f"-> {cfg.train_shards} + {cfg.validation_shards} shards in {out} "
            f"({comm.size} rank(s) x {workers} worker(s); {len(done_before)} shard(s) already complete)")
    progress = Progress(sum(len(j.items) for j in todo), "prep", enabled=cfg.progress and comm.rank == 0)

    def my_share():
        fresh = run_jobs(write_shard, todo, workers, lambda job: progress.advance(len(job.items)))
        return [(r, False) for r in done_before.values()] + [(r, True) for r in fresh]

    try:
        gathered = gather_results(comm, my_share, PrepError)
    finally:
        progress.close()
    by_name = {r.name: r for r, _ in gathered}
    converted = sum(r.num_records + len(r.skipped) for r, fresh in gathered if fresh)

    splits, skipped = {}, []
    for split, shards in plan.items():
        rs = [by_name[records.shard_name(split, i, len(shards))] for i in range(len(shards))]
        splits[split] = manifest.Split(tuple(
            manifest.Shard(r.name, r.num_records, r.sha256, {"inputs": r.inputs, "reencoded": r.reencoded})
            for r in rs))
        skipped += [s for r in rs for s in r.skipped]
    man = manifest.Manifest(splits[records.TRAIN], splits[records.VALIDATION], len(classes),
                            {wnid: k + records.LABEL_OFFSET for k, wnid in enumerate(classes)}, out,
                            records.LABEL_OFFSET, {"seed": cfg.seed, "skipped": skipped})
    if comm.rank == 0:
        if skipped:
            atomic.write_bytes(out / manifest.SKIPPED,
                               "".join(f"{s['file']}\t{s['reason']}\n" for s in skipped).encode())
        manifest.save(out, man)
        for note in (out / STATE_DIR).glob("*.json"):
            note.unlink(missing_ok=True)
        (out / STATE_DIR).rmdir()
        secs = time.perf_counter() - start
        n = man.train.num_images + man.validation.num_images
        reused = f" ({n - converted} in shards reused from an earlier run)" if converted < n else ""
        log(f"prep: done: {n} images ({man.train.num_images} train, "
            f"{man.validation.num_images} validation) in {len(jobs)} shards{reused}, "
            f"{secs:.1f} s, {converted / secs:,.0f} images/s"
            + (f"; skipped {len(skipped)} bad image(s), see {out / manifest.SKIPPED}" if skipped else ""))
    return man
