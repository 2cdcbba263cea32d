"""One training step on two software stacks, in alternating rounds: is the new TensorFlow faster?

    python bench/stack_compare.py --old .venv215 --new .venv [--rounds 3] [--model resnet50 --image-size 64]

Each round runs ``hvdtrain bench --json`` (hvdtrain's model, then the Keras baseline) from the old
stack's venv and from the new one's, back to back, so both see the same machine (these VMs drift
within minutes); the ratio new/old is taken within each round and the median over rounds is
reported. Both stacks run the same model at the same size, so the ratio per image is also the ratio
per FLOP. bf16 rows run only where ``hvdtrain bench`` accepts bf16 (oneDNN has bfloat16 kernels).
Writes bench/results/stack-<time>.json. A benchmark: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(venv: Path, impl: str, precision: str, args: argparse.Namespace) -> dict | None:
    cmd = [str(venv / "bin" / "hvdtrain"), "bench", "--json", "--impl", impl, "--precision", precision,
           "--model", args.model, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
           "--steps", str(args.steps), "--windows", str(args.windows), "--no-peak"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                         env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": f"{venv / 'bin'}:/usr/bin:/bin"})
    if res.returncode != 0:
        print(f"[stack] {venv.name} {impl} {precision}: failed: {res.stderr.strip().splitlines()[-1:]}",
              flush=True)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def version(venv: Path) -> str:
    probe = "import tensorflow as tf; print(tf.__version__)"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    return out.strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, required=True, help="venv of the old stack (e.g. TF 2.15)")
    p.add_argument("--new", type=Path, required=True, help="venv of the new stack (e.g. TF 2.21)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    stacks = {"old": args.old.resolve(), "new": args.new.resolve()}
    versions = {k: version(v) for k, v in stacks.items()}
    for k in ("old", "new"):
        print(f"[stack] {k} = TF {versions[k]} ({stacks[k]})")
    rows: dict[str, list[dict]] = {}
    for r in range(1, args.rounds + 1):
        for precision in args.precisions.split(","):
            for impl in ("hvdtrain", "keras"):
                got = {k: bench(v, impl, precision, args) for k, v in stacks.items()}
                if None in got.values():
                    continue
                ips = {k: g["images_per_second"] for k, g in got.items()}
                ratio = ips["new"] / ips["old"]
                rows.setdefault(f"{impl} {precision}", []).append({"round": r, **ips, "ratio": ratio})
                print(f"[stack] round {r} {impl:8s} {precision}: old {ips['old']:.2f}  new {ips['new']:.2f} "
                      f"images/s  new/old {ratio:.3f}", flush=True)
    print(f"\n{'row':16s} {'rounds':>6s} {'median new/old':>15s}  (per image = per FLOP: same model)")
    summary = {}
    for name, rs in rows.items():
        med = statistics.median(x["ratio"] for x in rs)
        summary[name] = med
        print(f"{name:16s} {len(rs):6d} {med:15.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / time.strftime("stack-%Y-%m-%dT%H%M%SZ.json", time.gmtime())
    path.write_text(json.dumps({"versions": versions, "args": {k: str(v) for k, v in vars(args).items()},
                                "rows": rows, "median_ratio": summary}, indent=1))
    print(f"[stack] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
