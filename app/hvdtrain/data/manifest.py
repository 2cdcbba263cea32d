"""The manifest: what a data set holds, and what every later step checks against.

``manifest.json`` (written by ``hvdtrain prep`` or ``hvdtrain index``; read by verify, train,
eval, bench)::

    {
      "format": "tpu",                # the record layout (records.FORMATS): keys, label base
      "num_classes": 1000,            # labels run label_offset .. label_offset + num_classes - 1
      "label_offset": 1,              # tensorflow/tpu: 1 (labels 1..1000); consumers subtract it
      "labels": {"n01440764": 1, ...},  # synset -> label ({} where records carry no synset)
      "shard_dir": "/data/imagenet",  # optional: where the shards are (default: beside the manifest)
      "train":      {"num_images": N, "num_shards": S,
                     "shards": [{"name": "train-00000-of-01024", "num_records": n,
                                 "sha256": "..."}, ...]},   # name: path under shard_dir
      "validation": {... the same ...},
      ...                             # other keys (prep's seed, inputs, skipped files) kept as they are
    }

``Manifest`` is the typed form every module uses; ``load`` and ``save`` are the only places the
JSON is read or written. ``shard_dir`` lets a manifest live outside a read-only data directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.data import records
from hvdtrain.data.records import LABEL_OFFSET, SPLITS
from hvdtrain.errors import HvdtrainError, not_a_directory

MANIFEST = "manifest.json"
SKIPPED = "skipped.txt"


class DataError(HvdtrainError, RuntimeError):
    """The data directory is missing, incomplete or does not match what is expected."""


@dataclass(frozen=True)
class Shard:
    name: str
    num_records: int
    sha256: str
    extra: dict = field(default_factory=dict, compare=False)  # prep's inputs digest, re-encodes

    def to_json(self) -> dict:
        return {"name": self.name, "num_records": self.num_records, "sha256": self.sha256, **self.extra}


@dataclass(frozen=True)
class Split:
    shards: tuple[Shard, ...]

    @property
    def num_images(self) -> int:
        return sum(s.num_records for s in self.shards)

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    @property
    def readable(self) -> tuple[Shard, ...]:
        """The shards that hold records. Empty ones (tensorflow/tpu's converter writes them for any
        set smaller than its shard count) stay listed, hashed and verified, but are never opened."""
        return tuple(s for s in self.shards if s.num_records)

    @property
    def counts(self) -> list[int]:
        """Records per readable shard, in the order of ``Manifest.paths``."""
        return [s.num_records for s in self.readable]

    def to_json(self) -> dict:
        return {"num_images": self.num_images, "num_shards": self.num_shards,
                "shards": [s.to_json() for s in self.shards]}


@dataclass(frozen=True)
class Manifest:
    train: Split
    validation: Split
    num_classes: int
    labels: dict[str, int]
    shard_dir: Path                       # where the shard files are
    label_offset: int = LABEL_OFFSET
    extra: dict = field(default_factory=dict)  # keys this schema does not name, kept verbatim
    format: str = records.TPU.name

    @property
    def record_format(self) -> records.Format:
        return records.FORMATS[self.format]

    def split(self, name: str) -> Split:
        return {"train": self.train, "validation": self.validation}[name]

    def paths(self, split: str) -> list[Path]:
        """The files train and eval read: the split's readable (non-empty) shards."""
        return [self.shard_dir / s.name for s in self.split(split).readable]

    def without_shards(self, split: str, names: set[str]) -> Manifest:
        """The same data set with some shards of ``split`` left out (corrupt-shard skipping)."""
        kept = Split(tuple(s for s in self.split(split).shards if s.name not in names))
        return replace(self, **{split: kept})

    def class_names(self) -> list[str]:
        """The name of each 0-based class index (label - label_offset): its synset where the
        manifest knows it, else the index itself."""
        names = [str(i) for i in range(self.num_classes)]
        for synset, label in self.labels.items():
            if 0 <= label - self.label_offset < self.num_classes:
                names[label - self.label_offset] = synset
        return names

    def fingerprint(self) -> str:
        """Identity of a data set for resume checks: class map and the shards' hashes."""
        ident = {"labels": self.labels, "label_offset": self.label_offset,
                 **{s: [sh.sha256 for sh in self.split(s).shards] for s in SPLITS}}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self, manifest_path: Path | None = None) -> dict:
        out = {"format": self.format, "num_classes": self.num_classes, "label_offset": self.label_offset,
               "labels": self.labels, **self.extra,
               "train": self.train.to_json(), "validation": self.validation.to_json()}
        if manifest_path is None or Path(manifest_path).parent.resolve() != self.shard_dir.resolve():
            out["shard_dir"] = str(self.shard_dir)
        return out


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def path_for(data_dir: str | Path, manifest_path: str | Path | None = None) -> Path:
    return Path(manifest_path) if manifest_path else Path(data_dir) / MANIFEST


def load(data_dir: str | Path, manifest_path: str | Path | None = None) -> Manifest:
    """The manifest of ``data_dir`` (or the one at ``manifest_path``), checked for its keys."""
    path = path_for(data_dir, manifest_path)
    if manifest_path is None and not Path(data_dir).is_dir():
        raise DataError(not_a_directory("data dir", data_dir))
    if not path.is_file():
        if manifest_path is None and (shards := find_shards(data_dir)):
            raise DataError(f"{path} not found, but {data_dir} holds {len(shards)} TFRecord shard(s) "
                            f"(e.g. {shards[0].relative_to(data_dir)}): index them once with "
                            f"`hvdtrain index {data_dir}` (add --manifest PATH if {data_dir} is "
                            f"read-only, then pass the same --manifest PATH to every command)")
        raise DataError(f"{path} not found: is {data_dir} the output of `hvdtrain prep`? "
                        f"(an interrupted prep leaves no manifest; re-run it to resume)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    return from_json(raw, path)


def find_shards(data_dir: str | Path) -> list[Path]:
    """Files named like a shard of a known layout, in ``data_dir`` or its train/ and validation/
    subfolders (tensorflow/tpu's two layouts), sorted."""
    data_dir = Path(data_dir)
    found = []
    for folder in (data_dir, *(data_dir / s for s in SPLITS)):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.is_file() and records.shard_split(p.name)]
    return sorted(found)


def from_json(raw: dict, path: Path) -> Manifest:
    for key in ("num_classes", "labels", *SPLITS):
        if key not in raw:
            raise DataError(f"{path} has no '{key}' entry")
    fmt = raw.get("format", records.TPU.name)
    if fmt not in records.FORMATS:
        raise DataError(f"{path}: unknown record format '{fmt}' (known: {', '.join(records.FORMATS)})")
    try:
        splits = {s: Split(tuple(Shard(sh["name"], int(sh["num_records"]), sh["sha256"],
                                       {k: v for k, v in sh.items()
                                        if k not in ("name", "num_records", "sha256")})
                                 for sh in raw[s]["shards"])) for s in SPLITS}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: a shard entry lacks {exc}") from None
    shard_dir = path.parent / raw["shard_dir"] if raw.get("shard_dir") else path.parent
    known = {"format", "num_classes", "label_offset", "labels", "shard_dir", *SPLITS}
    return Manifest(splits["train"], splits["validation"], int(raw["num_classes"]), dict(raw["labels"]),
                    shard_dir, int(raw.get("label_offset", records.FORMATS[fmt].label_offset)),
                    {k: v for k, v in raw.items() if k not in known}, fmt)


def save(path: str | Path, man: Manifest) -> Path:
    """Write atomically; ``path`` is the manifest file or the directory it goes in."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    atomic.write_json(path, man.to_json(path))
    return path
