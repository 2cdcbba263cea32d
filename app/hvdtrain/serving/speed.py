"""``hvdtrain bench --eval --export E``: inference speed of every form of an export, side by side
with the checkpoint it came from, in one process (compare only within one run).

Per form: latency at batch 1 (p50 and p99 of single calls after warm-up) and images/s at a
throughput batch (the median of timed windows), on the preprocessed tensor every form takes.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from hvdtrain.cluster import topology
from hvdtrain.serving import exports, models


def _latencies(call, x, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call(x)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call(x)
        out.append(time.perf_counter() - t)
    return out


def time_model(model: models.Model, batch: int, steps: int, windows: int, warmup: int) -> dict:
    rng = np.random.default_rng(0)
    one = rng.uniform(-2, 2, (1, model.image_size, model.image_size, 3)).astype(np.float32)
    many = rng.uniform(-2, 2, (batch, model.image_size, model.image_size, 3)).astype(np.float32)
    lat = sorted(_latencies(model.tensor, one, steps * windows, warmup))
    rates = [batch * steps / sum(_latencies(model.tensor, many, steps, warmup if w == 0 else 0))
             for w in range(windows)]
    return {"form": model.form, "precision": model.precision,
            "p50_ms": round(1e3 * lat[len(lat) // 2], 2),
            "p99_ms": round(1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
            "images_per_second": round(statistics.median(rates), 1), "batch": batch}


def bench_export(cfg) -> dict:
    """``cfg`` is the BenchConfig (its --export, --batch-size, --steps, --windows, --warmup)."""
    from hvdtrain.cluster import runtime

    top = cfg.export if exports.versions(cfg.export) else exports.resolve(cfg.export).parent
    rt = runtime.start_local(cfg.threads)
    rows, skipped = [], []
    newest = exports.read_info(exports.resolve(cfg.export))  # its checkpoint is the reference
    candidates = [("checkpoint", lambda: models.from_checkpoint(rt, None, newest["checkpoint"]))]
    for version in exports.versions(top):
        info = exports.read_info(version)
        for form in exports.formats_present(version):
            if info["precision"] == "bf16" and not topology.bf16_supported():
                skipped.append(f"{version.name}/{form} bf16: {topology.bf16_refusal('bf16')}")
                continue
            candidates.append((f"{version.name}/{form}",
                               lambda v=version, f=form: models.from_export(rt, v, f)))
    for name, load in candidates:
        try:
            model = load()
        except Exception as exc:  # a form that cannot load here is reported, the others still timed
            skipped.append(f"{name}: {str(exc).splitlines()[0][:200]}")
            continue
        rows.append({"name": name, **time_model(model, cfg.batch_size, cfg.steps, cfg.windows, cfg.warmup)})
    base = next((r for r in rows if r["name"] == "checkpoint"), None)
    for r in rows:
        if base:
            r["vs_checkpoint"] = round(r["images_per_second"] / base["images_per_second"], 3)
    return {"mode": "eval-export", "export": str(top), "rows": rows, "skipped": skipped}


def render(res: dict) -> str:
    lines = [f"inference of {res['export']} (batch 1 latency; throughput at batch "
             f"{res['rows'][0]['batch'] if res['rows'] else '?'}):",
             f"{'model':<22} {'p50 ms':>8} {'p99 ms':>8} {'images/s':>10} {'vs checkpoint':>14}"]
    for r in res["rows"]:
        lines.append(f"{r['name'] + ' ' + r['precision']:<22} {r['p50_ms']:>8} {r['p99_ms']:>8} "
                     f"{r['images_per_second']:>10} {r.get('vs_checkpoint', '-'):>14}")
    lines += [f"not timed: {s}" for s in res["skipped"]]
    return "\n".join(lines)
