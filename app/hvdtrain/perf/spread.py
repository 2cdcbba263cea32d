"""Step-time spread, and what it costs a synchronous job: every step lasts as long as its slowest
rank, so a job of N ranks pays the expected maximum of N step times, not their mean.

The expected maximum is computed by resampling the measured per-step times: for ranks drawing
independently from empirical distributions F_g (n_g ranks each), the slowest of them is below x
with probability G(x) = prod_g F_g(x)^n_g, and E[max] = sum_j x_j (G(x_j) - G(x_(j-1))) over the
sorted sample values, exact for those distributions. With few samples and many ranks it tends
to the sample maximum, so a tail the samples never saw is left out; a stated spread (``--step-cv``)
is turned into samples at the normal distribution's quantiles instead, whose maximum over N
follows the usual mu + sigma * sqrt(2 ln N) growth.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from statistics import NormalDist


def summarize(seconds: list[float]) -> dict:
    """Median, coefficient of variation and p99/median of per-step times (what bench reports)."""
    if len(seconds) < 2:
        raise ValueError("need at least 2 step times for a spread")
    ordered = sorted(seconds)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    cv = statistics.stdev(ordered) / statistics.mean(ordered)
    return {"median_ms": round(1e3 * median, 2), "cv": round(cv, 4),
            "p99_over_median": round(p99 / median, 4), "steps": len(ordered)}


def relative(seconds: list[float]) -> tuple[float, ...]:
    """Step times as multiples of their mean (what the cost model scales by the compute time)."""
    mean = statistics.mean(seconds)
    return tuple(s / mean for s in seconds)


def normal_samples(cv: float, n: int = 2000) -> tuple[float, ...]:
    """A stated spread as relative step times: the normal distribution's quantiles, mean 1."""
    if cv == 0:
        return (1.0,)
    dist = NormalDist(1.0, cv)
    return tuple(max(0.0, dist.inv_cdf((i + 0.5) / n)) for i in range(n))


def expected_max(groups: list[tuple[tuple[float, ...], int]]) -> float:
    """E[max] over ranks: ``groups`` of (that group's samples, how many ranks draw from them)."""
    groups = [(sorted(s), n) for s, n in groups if n > 0]
    points = sorted({x for s, _ in groups for x in s})
    total, below = 0.0, 0.0
    for x in points:
        g = 1.0
        for samples, n in groups:
            g *= (bisect_right(samples, x) / len(samples)) ** n
        total += x * (g - below)
        below = g
    return total


def straggler_factor(samples: tuple[float, ...], ranks: int, slow_ranks: int = 0,
                     slow_by: float = 0.0, slow_samples: tuple[float, ...] | None = None) -> float:
    """E[slowest of ``ranks`` step times] / the typical rank's mean step time. ``slow_ranks`` of
    them (the slowest node's) draw from ``slow_samples`` (that node's own step times over the
    typical mean) where measured, else from ``samples`` made ``slow_by`` slower (its deficit:
    0.1 = 10% fewer images/s)."""
    if ranks <= 1 and not slow_by and slow_samples is None:
        return 1.0
    slow = slow_samples if slow_samples is not None else tuple(x / (1.0 - slow_by) for x in samples)
    return expected_max([(samples, ranks - slow_ranks), (slow, slow_ranks)])
