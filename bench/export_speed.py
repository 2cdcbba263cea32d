"""The exported SavedModel against the checkpoint it came from, in paired rounds (one process).

`hvdtrain bench --eval --export E` times every form once, side by side; on a VM whose speed drifts
within a minute, one window can read 20% either way. This script alternates the two in rounds
(the order flipping each round) and reports each round's ratio and their median, which is what
bench/NOTES.md quotes for "the SavedModel >= 0.95x the checkpoint".

    python bench/export_speed.py EXPORT_DIR [--rounds 3] [--batch 32] [--steps 3] [--windows 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from hvdtrain.cluster import runtime
from hvdtrain.cluster.topology import ThreadFlags
from hvdtrain.serving import exports, models, speed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--windows", type=int, default=3)
    a = ap.parse_args()
    version = exports.resolve(a.export)
    rt = runtime.start_local(ThreadFlags())
    saved = models.from_export(rt, version)
    ckpt = models.from_checkpoint(rt, None, exports.read_info(version)["checkpoint"])
    ratios = []
    for r in range(a.rounds):
        pair = (ckpt, saved) if r % 2 == 0 else (saved, ckpt)
        got = {m.form: speed.time_model(m, a.batch, a.steps, a.windows, warmup=2) for m in pair}
        ratio = got["savedmodel"]["images_per_second"] / got["checkpoint"]["images_per_second"]
        ratios.append(ratio)
        print(f"round {r + 1}: checkpoint {got['checkpoint']['images_per_second']} images/s, SavedModel "
              f"{got['savedmodel']['images_per_second']} -> {ratio:.3f}", flush=True)
    print(f"SavedModel / checkpoint at batch {a.batch}: median {statistics.median(ratios):.3f} over "
          f"{a.rounds} rounds ({', '.join(f'{x:.3f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
