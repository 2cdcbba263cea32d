"""``mpirun ... hvdtrain bench --nodes``: every node's training speed, before a big booking.

Every rank times its own training step (``engine.step.make_local_step``: no allreduce, so a slow
rank does not hide behind the others) on synthetic input, first all ranks at once (as in training:
shared power, cooling and file system) and then each host alone, in turn. Rank 0 prints each
host's images/s together and alone, its step-time spread, and the hosts more than
``SLOW_BELOW`` under the median, and writes a JSON that ``hvdtrain plan --from-bench`` reads (the
median node rate, the per-step samples, the slowest node and its samples). Alone, the hosts take
turns: on N hosts that phase lasts N x steps x a step's time (``--no-alone`` leaves it out).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from hvdtrain import atomic
from hvdtrain.perf import spread

SLOW_BELOW = 0.05  # a host this much below the median node rate is named


def _timed(step, batches, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        float(step(*next(batches))[0])
        out.append(time.perf_counter() - t)
    return out


def measure(rt, cfg, net, batches) -> dict:
    """This rank's step times together and alone; every rank returns the gathered list."""
    from hvdtrain.engine.optim import make_optimizer
    from hvdtrain.engine.step import make_local_step
    from hvdtrain.training.config import imagenet_plan

    hvd = rt.hvd
    step = make_local_step(rt, net, make_optimizer(imagenet_plan(cfg.batch_size * rt.size, rt.size), net))
    n = cfg.steps * cfg.windows
    _timed(step, batches, max(1, cfg.warmup))
    hvd.allgather_object(0)  # start together
    mine = {"rank": rt.rank, "host": rt.hosts[rt.rank], "together": _timed(step, batches, n), "alone": []}
    if cfg.alone:
        for host in dict.fromkeys(rt.hosts):
            hvd.allgather_object(0)
            if host == mine["host"]:
                mine["alone"] = _timed(step, batches, n)
    return hvd.allgather_object(mine)


def summarize(ranks: list[dict], batch: int) -> dict:
    """Per host: images/s (together, alone), spread; the slow hosts; what plan --from-bench reads."""
    hosts: dict[str, list[dict]] = {}
    for r in ranks:
        hosts.setdefault(r["host"], []).append(r)
    per_host = {}
    for host, rs in hosts.items():
        pooled = [t for r in rs for t in r["together"]]

        def rate(phase, rs=rs):
            return round(sum(batch / statistics.mean(r[phase]) for r in rs), 3) if all(r[phase] for r in rs) \
                else None
        per_host[host] = {"ranks": [r["rank"] for r in rs], "images_per_second": rate("together"),
                          "alone_images_per_second": rate("alone"),
                          **{k: v for k, v in spread.summarize(pooled).items() if k != "steps"}}
    rates = {h: v["images_per_second"] for h, v in per_host.items()}
    median = statistics.median(rates.values())
    slowest = min(rates, key=rates.get)
    typical = statistics.median(statistics.mean(r["together"]) for r in ranks)  # a typical rank's step
    # every rank's jitter about its own mean, at the typical step: stragglers without node deficits
    samples = [t / statistics.mean(r["together"]) * typical for r in ranks for t in r["together"]]
    slow = hosts[slowest][0]["together"]
    return {"hosts": per_host, "median_node_images_per_second": round(median, 3),
            "slow_hosts": sorted(h for h, v in rates.items() if v < (1 - SLOW_BELOW) * median),
            "slowest_host": slowest, "node_spread": round(max(0.0, 1 - rates[slowest] / median), 4),
            "step_seconds": [round(t, 5) for t in samples],
            "slow_node_samples": [round(t / typical, 5) for t in slow],
            "ranks_per_node": max(len(rs) for rs in hosts.values()), "batch_per_rank": batch}


def run_health(rt, cfg, net, batches) -> dict:
    res = summarize(measure(rt, cfg, net, batches), cfg.batch_size)
    if rt.rank == 0 and cfg.out is not None:
        atomic.write_json(Path(cfg.out), res)
        res["written_to"] = str(cfg.out)
    return res


def render(res: dict) -> str:
    lines = [f"{'host':<20} {'images/s':>10} {'alone':>10} {'step ms':>9} {'CV':>7} {'p99/median':>11}"]
    for host, v in sorted(res["hosts"].items(), key=lambda kv: kv[1]["images_per_second"]):
        alone = f"{v['alone_images_per_second']:.2f}" if v["alone_images_per_second"] else "-"
        mark = "  SLOW" if host in res["slow_hosts"] else ""
        lines.append(f"{host:<20} {v['images_per_second']:>10.2f} {alone:>10} {v['median_ms']:>9.1f} "
                     f"{v['cv']:>7.3f} {v['p99_over_median']:>11.3f}{mark}")
    slow = ", ".join(res["slow_hosts"]) or "none"
    lines.append(f"median node {res['median_node_images_per_second']:.2f} images/s; slowest "
                 f"{res['slowest_host']} ({res['node_spread']:.1%} below); more than {SLOW_BELOW:.0%} "
                 f"below the median: {slow}")
    if res.get("written_to"):
        lines.append(f"wrote {res['written_to']}: `hvdtrain plan --from-bench {res['written_to']} ...` "
                     "reads it")
    return "\n".join(lines)
