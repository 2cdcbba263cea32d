"""``make bench``: hvdtrain against the baseline, interleaved in one invocation, as a ratio table.

Each row runs ``hvdtrain bench --json`` in fresh processes (under mpirun for the 2-rank rows).
A "train" row is paired rounds: in each round the baseline (``--impl keras``:
tf.keras.applications.ResNet50, a plain DistributedGradientTape loop, TF default threads) and
hvdtrain run back to back at the same settings, in an order that alternates from round to round,
so a drift of the machine's speed favours neither. The row's ratio is the median of the rounds'
ratios, per image and per FLOP (our ResNet v1.5 does 24.5 GFLOP an image where the baseline's v1
does 23.2, so per FLOP = per image x 24.5 / 23.2). Results go to ``bench/results/<time>.json``
with the CPU model.

    python bench/bench_suite.py [--quick] [--rounds 3] [--only "train 1x2 bf16,..."] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hvdtrain.cluster import topology
from hvdtrain.cluster.world import mpirun_command, mpirun_env

HVDTRAIN = str(Path(sys.executable).parent / "hvdtrain")
RN50 = ["--model", "resnet50", "--image-size", "224", "--batch-size", "32"]


def bench(args: list[str], np: int | None = None, timeout: int = 1800) -> dict:
    cmd = [HVDTRAIN, "bench", "--json", *args]
    if np:
        cmd = [*mpirun_command(np, bind="core"), *cmd]
    env = {**mpirun_env(), "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1]
    out = json.loads(line)
    out["command"] = " ".join(cmd[cmd.index("bench") - 1:] if not np else cmd)
    return out


def _real_records(work: Path, images: int) -> Path:
    """TFRecords of ImageNet-sized JPEGs made by prep (cached between runs)."""
    records = work / f"records-{images}"
    if not (records / "manifest.json").is_file():
        from hvdtrain.data.demo_data import write_synthetic_tree
        from hvdtrain.data.prep import PrepConfig, run_prep

        raw = work / f"raw-{images}"
        if not (raw / "validation_labels.txt").is_file():
            write_synthetic_tree(raw, images)
        run_prep(PrepConfig(raw, records, train_shards=16, validation_shards=4, progress=False),
                 log=lambda *_: None)
    return records


def paired_rounds(name: str, args: list[str], rounds: int, np: int | None = None) -> dict:
    """Baseline and hvdtrain back to back, ``rounds`` times, alternating which goes first."""
    each = []
    for i in range(rounds):
        order = ("keras", "hvdtrain") if i % 2 == 0 else ("hvdtrain", "keras")
        got = {impl: bench([*args, "--impl", impl], np) for impl in order}
        per_image = got["hvdtrain"]["images_per_second"] / got["keras"]["images_per_second"]
        flop_ratio = got["hvdtrain"]["gflops_per_image"] / got["keras"]["gflops_per_image"]
        each.append({"baseline": got["keras"], "hvdtrain": got["hvdtrain"], "ratio": per_image,
                     "ratio_per_flop": per_image * flop_ratio})
        print(f"[bench] {name} round {i + 1}/{rounds}: baseline "
              f"{got['keras']['images_per_second']}, hvdtrain {got['hvdtrain']['images_per_second']}"
              f" images/s: {per_image:.3f} per image, {per_image * flop_ratio:.3f} per FLOP",
              file=sys.stderr, flush=True)
    mid = sorted(each, key=lambda r: r["ratio"])[(len(each) - 1) // 2]  # the median round
    return {"baseline": mid["baseline"], "hvdtrain": mid["hvdtrain"],
            "ratio": statistics.median(r["ratio"] for r in each),
            "ratio_per_flop": statistics.median(r["ratio_per_flop"] for r in each),
            "rounds": [{k: v for k, v in r.items() if k.startswith("ratio")} for r in each]}


def run_suite(quick: bool, out_dir: Path, work: Path, rounds: int = 3, only: tuple[str, ...] = ()) -> dict:
    timing = ["--steps", "2", "--windows", "2", "--warmup", "1"] if quick else \
             ["--steps", "4", "--windows", "3", "--warmup", "3"]
    records = _real_records(work, 320 if quick else 1280)
    rows, t0 = [], time.time()

    def pair(name, extra, np=None, target=None):
        if only and name not in only:
            return
        rows.append({"row": name, "target": target,
                     **paired_rounds(name, [*RN50, *timing, *extra], rounds, np)})
        _progress(rows[-1])

    def single(name, args, np=None, versus=None, target=None, key="images_per_second"):
        if only and name not in only:
            return None
        mine = bench([*args], np)
        row = {"row": name, "hvdtrain": mine, "target": target}
        if versus is not None:
            row["versus"] = versus["row"]
            row["ratio"] = mine[key] / versus["hvdtrain"][key]
        rows.append(row)
        _progress(row)
        return row

    bf16 = topology.bf16_supported()  # else a bf16 row would abort inside TensorFlow
    if not bf16:
        print(f"[bench] bf16 rows skipped: {topology.bf16_refusal('bf16')}", file=sys.stderr)
    pair("train 1x2 fp32", ["--precision", "fp32"], target=1.1)
    if bf16:
        pair("train 1x2 bf16", ["--precision", "bf16"], target=1.5)
    pair("train 2x1 fp32", ["--precision", "fp32"], np=2)
    if bf16:
        pair("train 2x1 bf16", ["--precision", "bf16"], np=2)
    fp32 = next((r for r in rows if r["row"] == "train 1x2 fp32"), None)
    single("train 1x2 bf32", [*RN50, *timing, "--precision", "bf32"], versus=fp32)
    single("train 1x2 fp32 real input", [*RN50, *timing, "--input", str(records)], versus=fp32,
           target=0.9)
    ev32 = single("eval 1x2 fp32", [*RN50, *timing, "--eval", "--batch-size", "64"])
    if bf16:
        single("eval 1x2 bf16", [*RN50, *timing, "--eval", "--batch-size", "64", "--precision",
                                 "bf16"], versus=ev32, target=2.0)
    prep = single("prep 1 vs all workers", ["--prep", "--prep-images", "400" if quick else "3000"])
    if prep:
        prep["ratio"] = prep["hvdtrain"]["scaling_efficiency"]
        prep["target"] = 0.9
    from hvdtrain.perf.bench import machine_summary

    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": quick,
              "rounds": rounds,
              "machine": machine_summary(), "seconds": round(time.time() - t0), "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['when'].replace(':', '')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nresults: {path}")
    return result


def _progress(row: dict) -> None:
    mine = row["hvdtrain"].get("images_per_second")
    base = row.get("baseline", {}).get("images_per_second")
    print(f"[bench] {row['row']}: hvdtrain {mine}" + (f", baseline {base}" if base else ""),
          file=sys.stderr, flush=True)


def table(result: dict) -> str:
    lines = [f"machine: {result['machine']['cpu']} ({', '.join(result['machine']['isa'])}), "
             f"{result['machine']['cores']} cores; {result['seconds']} s",
             f"{'row':<28} {'baseline':>9} {'hvdtrain':>9} {'ratio':>6} {'target':>7}  ok   "
             f"{'per FLOP':>8}",
             "-" * 80]
    for r in result["rows"]:
        base = r.get("baseline", {}).get("images_per_second")
        mine = r["hvdtrain"]["images_per_second"]
        ratio = r.get("ratio")
        target = r.get("target")
        ok = "" if target is None or ratio is None else ("yes" if ratio >= target else "NO")
        ref = f" vs {r['versus']}" if "versus" in r else ""
        flop = f"{r['ratio_per_flop']:.2f}" if "ratio_per_flop" in r else ""
        lines.append(f"{r['row']:<28} {base if base else '':>9} {mine:>9} "
                     f"{(f'{ratio:.2f}' if ratio else ''):>6} {(f'>={target}' if target else ''):>7}  "
                     f"{ok:<4} {flop:>8}{ref}")
    lines.append(f"images/s (global); ratio = hvdtrain / baseline per image (median of "
                 f"{result.get('rounds', 1)} paired rounds for the train rows), or / the named row")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few steps: checks the suite runs")
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds per train row (median)")
    ap.add_argument("--only", default="", help='only these rows, comma-separated names '
                                                '(e.g. "train 1x2 fp32,train 1x2 bf16")')
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--work", default="build/bench")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the in-process prep's workers inherit it
    run_suite(args.quick, Path(args.out), Path(args.work), args.rounds,
              tuple(n.strip() for n in args.only.split(",") if n.strip()))


if __name__ == "__main__":
    main()
