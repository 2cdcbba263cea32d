"""Does the gradient allreduce overlap the backward pass? Read a Horovod timeline and say.

Horovod (HOROVOD_TIMELINE=file, written by rank 0) records each tensor as a Chrome-trace
"process": a NEGOTIATE_ALLREDUCE span that opens when the first rank reports the tensor ready,
then an ALLREDUCE span while it is reduced. A gradient is ready when back-propagation has
produced it, so within one step the last gradient's negotiation start marks the end of the
backward pass. Allreduce time before that mark is hidden behind compute; the rest is exposed.

    python -m hvdtrain.perf.timeline TIMELINE.json      (bench/scaling.py uses overlap())
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def load(path: str | Path) -> list[dict]:
    """The trace's records; a file cut mid-record (the writer killed) keeps its whole records."""
    text, dec, events = Path(path).read_text(), json.JSONDecoder(), []
    pos = text.find("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return events
        try:
            record, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return events
        events.append(record)


def per_tensor(events: list[dict]) -> dict[str, dict[str, list]]:
    """tensor name -> {"ready": [ts...], "allreduce": [(begin, end)...]}, one entry per use."""
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name" and "name" in e.get("args", {})}
    out: dict[str, dict[str, list]] = defaultdict(lambda: {"ready": [], "allreduce": []})
    stack: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for e in events:
        ph, pid = e.get("ph"), e.get("pid")
        if pid not in names or ph not in ("B", "E"):
            continue
        if ph == "B":
            stack[pid].append((e["name"], e["ts"]))
            if e["name"].startswith("NEGOTIATE_"):
                out[names[pid]]["ready"].append(e["ts"])
        elif stack[pid]:
            name, begin = stack[pid].pop()
            if name == "ALLREDUCE":
                out[names[pid]]["allreduce"].append((begin, e["ts"]))
    return dict(out)


def overlap(events: list[dict]) -> dict:
    """Per training step: when the backward pass ended (last gradient ready), how much allreduce
    time fell before it. Gradient tensors are the ones used once per step, the most common
    use count among tensors whose name says they are gradients."""
    tensors = {n: t for n, t in per_tensor(events).items() if "grad" in n.lower() and t["allreduce"]}
    if not tensors:
        raise ValueError("no gradient allreduces in the timeline (was HOROVOD_TIMELINE set on rank 0?)")
    steps = Counter(len(t["ready"]) for t in tensors.values()).most_common(1)[0][0]
    grads = {n: t for n, t in tensors.items() if len(t["ready"]) == steps and len(t["allreduce"]) == steps}
    rows = []
    for k in range(steps):
        ready = sorted(t["ready"][k] for t in grads.values())
        spans = sorted(t["allreduce"][k] for t in grads.values())
        busy, hidden = _union(spans), _union([(b, min(e, ready[-1])) for b, e in spans if b < ready[-1]])
        rows.append({"step": k + 1, "backward_ms": (ready[-1] - ready[0]) / 1e3,
                     "first_allreduce_starts_ms": (spans[0][0] - ready[0]) / 1e3,
                     "allreduce_busy_ms": busy / 1e3, "hidden_ms": hidden / 1e3,
                     "exposed_ms": (max(e for _, e in spans) - ready[-1]) / 1e3})
    return {"gradient_tensors": len(grads), "steps": rows}


def _union(spans: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for b, e in sorted(spans):
        if end is None or b > end:
            total, end = total + max(0, e - b), e
        elif e > end:
            total, end = total + e - end, e
    return total


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    res = overlap(load(argv[0]))
    print(f"{res['gradient_tensors']} gradient tensors")
    for r in res["steps"]:
        print(f"step {r['step']}: backward {r['backward_ms']:.0f} ms (first to last gradient ready); first "
              f"allreduce starts {r['first_allreduce_starts_ms']:.0f} ms after the first gradient; "
              f"allreduce busy {r['allreduce_busy_ms']:.0f} ms, {r['hidden_ms']:.0f} ms of it before the "
              f"backward pass ended; {r['exposed_ms']:.0f} ms after it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
