"""``hvdtrain verify``: re-read every shard and check it against the manifest.

Checks, per shard: the file exists, its sha256 and record count match, every record parses (TFRecord
CRCs included), carries every key of its format (``records.FORMATS``), and its label is in range
and agrees with its synset where records carry one. Returns the list of problems; empty means the
data set is intact.
"""

from __future__ import annotations

from pathlib import Path

from hvdtrain.data import integrity, manifest, records


def verify_dataset(data_dir: str | Path, manifest_path: Path | None = None, log=print) -> list[str]:
    import tensorflow as tf

    man = manifest.load(data_dir, manifest_path)
    offset, n_classes, fmt = man.label_offset, man.num_classes, man.record_format
    label_of = man.labels
    problems: list[str] = []
    total = 0
    for split in records.SPLITS:
        for shard in man.split(split).shards:
            path = man.shard_dir / shard.name
            if why := integrity.check_shard(path, shard):
                problems.append(f"{path}: {why}")
                if not path.is_file():
                    continue
            count = 0
            try:
                for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
                    count += 1
                    ex = records.parse_full(raw)
                    missing = [k for k in fmt.keys if k not in ex]
                    if missing:
                        problems.append(f"{path}: record {count} lacks {', '.join(missing)}")
                        break
                    label = ex[fmt.label]
                    if not offset <= label < offset + n_classes:
                        problems.append(f"{path}: record {count} label {label} outside "
                                        f"{offset}..{offset + n_classes - 1}")
                        break
                    synset = ex[fmt.synset].decode() if fmt.synset and label_of else None
                    if synset is not None and label_of.get(synset) != label:
                        problems.append(f"{path}: record {count} synset {synset} has label {label}, "
                                        f"manifest says {label_of.get(synset)}")
                        break
            except tf.errors.OpError as exc:
                problems.append(f"{path}: unreadable after {count} records "
                                f"({exc.message.splitlines()[0]})")
                continue
            if count != shard.num_records:
                problems.append(f"{path}: {count} records, manifest says {shard.num_records}")
            total += count
    log(f"verify: {total} records in "
        f"{sum(man.split(s).num_shards for s in records.SPLITS)} shards checked: "
        + ("all agree with the manifest" if not problems else f"{len(problems)} problem(s)"))
    return problems
