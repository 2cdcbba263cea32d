"""Levers against "as is" in paired, alternating rounds at one row's link cap (root only).

Why: this VM's speed drifts 10-20% within 15 minutes (bench/NOTES.md), more than the few points a
lever is worth. In bench/scaling.py's table each lever runs once, so a lever's row says as much
about when it ran as about the lever. Here each round runs "as is" and every chosen lever back to
back, in an order that rotates from round to round (so a steady drift favours none of them), then a
1-node reference beside another node. Per lever it reports:

- the efficiency in each round, against the mean of the references either side of the round;
- the paired ratio lever / "as is" within each round, its median, and in how many rounds the lever
  was faster. A lever that is faster in every round, by more than "as is" moves between rounds, wins.

Besides bench/scaling.py's levers (--lever) and ad hoc settings (--set), two comparisons that
bound the question: --shared-node (2 ranks per node sharing its core, as the seed's 2 workers a
node, flat and hierarchical allreduce, each against 1 node x 2 ranks beside another) and
--uncapped ("as is" with the link's cost gone: what remains is the rank's own communication work
on its one core and the wait for the slower core, a floor no network lever can beat).

The nodes, the cap and the runs are bench/scaling.py's (2 nodes x 1 rank x 1 core, ResNet-50 at
224 px, synthetic input, Horovod timeline on). Writes bench/results/paired-*.json.

    python bench/paired.py [--row 3] [--lever "cycle 100"] [--set HOROVOD_CYCLE_TIME=50]
                           [--shared-node] [--uncapped] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path

from scaling import (
    LEVERS,
    ROOT,
    ROWS,
    SHARED_NODE_LEVERS,
    Cluster,
    one_node,
    row_cap,
    shared_one_node,
    two_nodes,
)

AS_IS = "as is"
UNCAPPED = "as is, uncapped link"  # the floor: what no network lever can beat


def parse_levers(ap: argparse.ArgumentParser, names: list[str], settings: list[str],
                 shared_node: bool, uncapped: bool) -> list:
    """(name, bench flags, environment, ranks per node) for each lever chosen by name or given as
    NAME=VALUE,..."""
    levers = []
    for want in names:
        found = [(n, f, e, 1) for n, f, e, _ in LEVERS if want in n]
        if not found:
            ap.error(f"--lever {want!r}: no lever's name contains it; the levers are: "
                     + "; ".join(n for n, *_ in LEVERS))
        if any("BATCHx2" in f for _, f, *_ in found):
            ap.error(f"--lever {want!r}: a lever that changes the batch needs a reference at its own "
                     "batch; bench/scaling.py measures it")
        levers += [x for x in found if x not in levers]
    for setting in settings:
        pairs = [p.partition("=") for p in setting.split(",")]
        if any(not k or not sep for k, sep, _ in pairs):
            ap.error(f"--set {setting!r}: give NAME=VALUE[,NAME=VALUE...], e.g. HOROVOD_CYCLE_TIME=50")
        levers.append((setting, [], {k: v for k, _, v in pairs}, 1))
    if shared_node:
        levers += [(n, [], e, 2) for n, e in SHARED_NODE_LEVERS]
    if uncapped:
        levers.append((UNCAPPED, [], {}, 1))
    if not levers:
        ap.error("choose at least one lever: --lever NAME, --set NAME=VALUE, --shared-node or --uncapped")
    return levers


def _args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", type=int, default=3,
                    help="the real cluster whose ratio sets the cap, 1-based (default 3); the rows: "
                         + "; ".join(f"{i + 1}: {r[0]}" for i, r in enumerate(ROWS)))
    ap.add_argument("--lever", action="append", default=[],
                    help="a lever of bench/scaling.py whose name contains this (repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]",
                    help="a lever given as environment settings for every rank (repeatable)")
    ap.add_argument("--shared-node", action="store_true",
                    help="also 2 ranks per node sharing its core (the seed's 2 workers a node), flat and "
                         "hierarchical allreduce, at the same per-node batch, against 1 node x 2 ranks")
    ap.add_argument("--uncapped", action="store_true",
                    help="also 'as is' on the uncapped link: how far from 100%% a run is with the link's "
                         "cost gone (the rank's own communication work and the slower core remain)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of (as is, each lever, reference)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    if not 1 <= a.row <= len(ROWS):
        ap.error(f"--row {a.row}: the rows are 1-{len(ROWS)}")
    if a.rounds < 2:
        ap.error(f"--rounds {a.rounds}: pairing needs at least 2 rounds")
    a.runs = [(AS_IS, [], {}, 1), *parse_levers(ap, a.lever, a.set, a.shared_node, a.uncapped)]
    a.layouts = sorted({rpn for *_, rpn in a.runs})
    return a


class References:
    """Per ranks per node: that layout's 1-node rate, measured beside another node."""

    def __init__(self, a, cluster: Cluster):
        self.a, self.cluster = a, cluster
        self.refs = {rpn: [] for rpn in a.layouts}

    def __call__(self, rpn: int, when: str) -> float:
        a = self.a
        r = (one_node(a.batch, a.steps, a.windows) if rpn == 1 else
             shared_one_node(self.cluster, a.batch // rpn, a.steps, a.windows))
        self.refs[rpn].append({"when": when, **r})
        print(f"1 node x {rpn} rank(s) x 1 core, beside another ({when}): "
              f"{' and '.join(f'{x:.3f}' for x in r['each'])} images/s, CPU steal {r['cpu_steal']:.1%}",
              flush=True)
        return r["images_per_second"]


def one_round(cluster: Cluster, workdir: Path, a, k: int, cap_kbit: int, reference: References,
              results: list) -> None:
    """Round ``k``: every run once, in an order that rotates from round to round, then the references."""
    order = a.runs[k % len(a.runs):] + a.runs[:k % len(a.runs)]
    measured = []
    for name, flags, env, rpn in order:
        if name == UNCAPPED:
            cluster.uncap()
        m = two_nodes(cluster, workdir, a.batch // rpn, a.steps, a.windows, flags, env, rpn)
        if name == UNCAPPED:
            cluster.cap(f"{cap_kbit}kbit")
        measured.append((name, rpn, m))
        print(f"round {k + 1}: {name}: {m['images_per_second']:.3f} images/s, exposed "
              f"allreduce {m['timeline']['exposed_ms']:.0f} ms/step, CPU steal {m['cpu_steal']:.1%}",
              flush=True)
    local = {}  # per layout: the mean of its references either side of the round
    for rpn in a.layouts:
        before = reference.refs[rpn][-1]["images_per_second"]
        local[rpn] = (before + reference(rpn, f"after round {k + 1}")) / 2
    for name, rpn, m in measured:
        results.append({"round": k + 1, "lever": name, "ranks_per_node": rpn, "one_node": local[rpn],
                        "images_per_second": m["images_per_second"],
                        "efficiency": m["images_per_second"] / (2 * local[rpn]),
                        "step_ms": m["step_ms"],
                        "timeline": m["timeline"], "cpu_steal": m["cpu_steal"]})


def summarize(a, row, cap_kbit: int, refs: dict, results: list, minutes: float) -> None:
    def rate(name: str, k: int) -> float:
        return next(r["images_per_second"] for r in results if r["lever"] == name and r["round"] == k)

    rounds = range(1, a.rounds + 1)
    print(f"\n{row[0]}, cap {cap_kbit / 1e3:,.0f} Mbit/s, batch {a.batch}/rank, {a.rounds} rounds in "
          f"{minutes:.0f} min")
    if 2 in a.layouts:
        print("a 2-ranks-per-node run's efficiency is against 1 node x 2 ranks; its ratio to "
              "'as is' compares global images/s")
    print("lever | efficiency per round | median | lever / as is per round | median | faster in")
    summary = []
    for name, *_ in a.runs:
        effs = [r["efficiency"] for r in results if r["lever"] == name]
        ratios = [rate(name, k) / rate(AS_IS, k) for k in rounds]
        wins = sum(x > 1 for x in ratios)
        summary.append({"lever": name, "efficiencies": effs, "median_efficiency": statistics.median(effs),
                        "ratios_to_as_is": ratios, "median_ratio": statistics.median(ratios),
                        "faster_rounds": wins})
        print(f"{name} | {' '.join(f'{e:.1%}' for e in effs)} | {statistics.median(effs):.1%} | "
              + ("-" if name == AS_IS else
                 f"{' '.join(f'{x:.3f}' for x in ratios)} | {statistics.median(ratios):.3f} | "
                 f"{wins} of {a.rounds}"), flush=True)
    spread = [rate(AS_IS, k) for k in rounds]
    ref = [r["images_per_second"] for r in refs[1]]
    slower = statistics.median(min(r["each"]) / statistics.mean(r["each"]) for r in refs[1])
    print(f"'as is' between rounds: {min(spread):.3f}-{max(spread):.3f} images/s "
          f"({max(spread) / min(spread) - 1:.1%}); references {min(ref):.3f}-{max(ref):.3f}; the slower "
          f"core of a reference ran at {slower:.1%} of the pair's mean (median), and a synchronous "
          "2-node step runs at the slower rank's pace")
    out = Path(a.out) / f"paired-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"row": row[0], "cap_mbit": cap_kbit / 1e3, "batch": a.batch, "steps": a.steps,
                               "windows": a.windows, "references": refs, "runs": results,
                               "summary": summary}, indent=2))
    print(f"wrote {out}")


def main() -> int:
    a = _args()
    # a kill runs the finally blocks below: the cluster's namespaces and links go down
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    row, workdir, results, start = ROWS[a.row - 1], ROOT / "build" / "scaling-cluster", [], time.monotonic()
    cluster = Cluster(2, workdir).up()
    reference = References(a, cluster)
    try:
        for rpn in a.layouts:
            reference(rpn, "start")
        ratio, cap_kbit = row_cap(row, a.batch / reference.refs[1][0]["images_per_second"])
        print(f"{row[0]}: real ratio {ratio:.4f} -> cap {cap_kbit / 1e3:,.0f} Mbit/s; {a.rounds} rounds of "
              f"{', '.join(n for n, *_ in a.runs)}", flush=True)
        cluster.cap(f"{cap_kbit}kbit")
        for k in range(a.rounds):
            one_round(cluster, workdir, a, k, cap_kbit, reference, results)
    finally:
        cluster.down()
    summarize(a, row, cap_kbit, reference.refs, results, (time.monotonic() - start) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
