"""The step-time spread and what it costs at scale: the expected slowest rank (by resampling), the
slowest node, the node health check's summary, and the plan that reads them."""

import json
import math

import pytest

from conftest import run
from hvdtrain.perf import health, spread
from hvdtrain.perf.planner import read_bench
from hvdtrain.perf.scaling import Job, predict

SEED = dict(nodes=256, ranks_per_node=2, global_batch=24576, node_images_per_second=79.1, latency_us=2)


def test_expected_max_is_exact_for_small_distributions():
    assert spread.expected_max([((1.0, 2.0), 2)]) == pytest.approx(1 * 0.25 + 2 * 0.75)
    assert spread.expected_max([((1.0,), 1), ((1.0, 3.0), 1)]) == pytest.approx(2.0)
    assert spread.expected_max([((1.0, 2.0), 1)]) == pytest.approx(1.5)  # one rank: the mean


@pytest.mark.parametrize("ranks,z", [(2, 0.5642), (16, 1.7660), (512, 3.0367)])
def test_a_stated_spread_gives_the_normal_maximum(ranks, z):
    """E[max of N standard normals] (tabulated: 0.5642 at 2, 1.7660 at 16, 3.0367 at 512)."""
    got = spread.expected_max([(spread.normal_samples(0.05), ranks)])
    assert got == pytest.approx(1 + 0.05 * z, abs=0.05 * 0.02 * z + 1e-4)


def test_summary_of_step_times():
    s = spread.summarize([1.0] * 98 + [1.5, 3.0])
    assert s["median_ms"] == 1000.0 and s["steps"] == 100 and s["p99_over_median"] == 1.5
    assert s["cv"] == pytest.approx(0.2006, abs=1e-3)  # stdev 0.2056 / mean 1.025
    with pytest.raises(ValueError):
        spread.summarize([1.0])


def test_efficiency_falls_with_the_node_count_at_a_fixed_spread():
    samples = spread.normal_samples(0.05)
    eff = [predict(Job(**{**SEED, "nodes": n, "global_batch": 48 * 2 * n}, step_samples=samples))
           .scaling_efficiency for n in (2, 16, 256)]
    assert eff[0] > eff[1] > eff[2]
    # 2 ranks a node: one node already waits for the slower of its 2; 512 ranks wait for the slowest of 512
    assert eff[2] == pytest.approx(1.0282 / 1.1518, rel=0.01)


def test_a_small_spread_leaves_the_two_node_plan_within_a_point():
    plain = predict(Job(2, 1, 64, 3.0, link_gbps=1.0)).scaling_efficiency
    small = predict(Job(2, 1, 64, 3.0, link_gbps=1.0,
                        step_samples=spread.normal_samples(0.01))).scaling_efficiency
    assert abs(plain - small) < 0.01


def test_the_slowest_node_sets_the_pace():
    p = predict(Job(**SEED, node_spread=0.1))
    assert p.straggler_seconds == pytest.approx(p.compute_seconds * (1 / 0.9 - 1))
    assert p.largest_loss[0] == "stragglers"


def test_a_shared_file_system_too_slow_caps_the_rate():
    p = predict(Job(**SEED, fs_gbps=5.0))
    assert p.images_per_second == pytest.approx(5e9 / 8 / 109_000)
    assert p.fs_needed_gbps > 5 and p.largest_loss[0] == "file system"
    assert predict(Job(**SEED, fs_gbps=100.0)).fs_limited_seconds == 0


def _ranks(rates: dict, jitter=(1.0, 1.1, 0.9, 1.0)) -> list[dict]:
    """Fake health-check measurements: ranks per host at a host's rate (batch 8), with jitter."""
    out, rank = [], 0
    for host, per_rank in rates.items():
        for _ in range(2):
            step = 8 / per_rank
            out.append({"rank": rank, "host": host, "together": [step * j for j in jitter],
                        "alone": [step] * 4})
            rank += 1
    return out


def test_health_check_names_the_slow_host_and_feeds_the_plan(tmp_path):
    res = health.summarize(_ranks({"a": 10.0, "b": 10.0, "c": 10.2, "d": 9.0}), 8)
    assert res["slow_hosts"] == ["d"] and res["slowest_host"] == "d"
    assert res["median_node_images_per_second"] == pytest.approx(20.0)  # 2 ranks x 10
    assert res["node_spread"] == pytest.approx(1 - 18.0 / 20.0, abs=1e-3)
    assert res["hosts"]["a"]["cv"] == pytest.approx(0.0756, abs=1e-3)  # (1, 1.1, 0.9, 1) twice: sd 0.0756
    text = health.render(res)
    assert "d " in text and "SLOW" in text and "more than 5% below the median: d" in text
    (tmp_path / "h.json").write_text(json.dumps(res, indent=2))
    got = read_bench(tmp_path / "h.json")
    assert got["node_images_per_second"] == pytest.approx(20.0) and got["slowest_host"] == "d"
    assert sum(got["samples"]) / len(got["samples"]) == pytest.approx(1.0)


def test_plan_with_a_spread_names_its_assumptions_and_the_largest_loss(tmp_path):
    base = ["plan", "--nodes", 256, "--ranks-per-node", 2, "--global-batch", 24576,
            "--node-images-per-second", 79.1]
    text = run([*base], check=True).stdout
    assert "assumed: step spread: none (0, no stragglers)" in text
    text = run([*base, "--step-cv", 0.05, "--node-spread", 0.02], check=True).stdout
    assert "assumed: step spread: CV 0.05 as stated (--step-cv), normal" in text
    assert "largest loss: stragglers cost" in text and "bench --nodes" in text
    r = json.loads(run([*base, "--step-cv", 0.05, "--json"], check=True).stdout)
    eff = r["prediction"]["scaling_efficiency"]
    assert eff < 0.9 and not math.isnan(eff)
    for flag, value, says in (("--step-cv", 1.5, "--step-cv 1.5 must be in [0, 1]"),
                              ("--node-spread", 1, "--node-spread 1.0 must be in [0, 1)"),
                              ("--fs-gbps", -1, "--fs-gbps -1.0 must be positive")):
        bad = run([*base, flag, value])
        assert bad.returncode == 1 and says in bad.stderr, bad.stderr
    (tmp_path / "x.json").write_text("not json")
    bad = run([*base, "--from-bench", tmp_path / "x.json"])
    assert bad.returncode == 1 and f"--from-bench {tmp_path / 'x.json'}: not a bench JSON" in bad.stderr


def test_a_measured_spread_prints_its_band_narrower_with_more_steps(tmp_path):
    base = ["plan", "--nodes", 256, "--ranks-per-node", 2, "--global-batch", 24576,
            "--node-images-per-second", 79.1, "--json"]
    widths = []
    for steps in (8, 64):
        times = [0.5 * (1.0 + 0.05 * ((i * 7) % 5 - 2)) for i in range(steps)]  # CV about 0.07
        (tmp_path / f"b{steps}.json").write_text(json.dumps({"images_per_second": 79.1,
                                                             "step_seconds": times}))
        r = json.loads(run([*base, "--from-bench", tmp_path / f"b{steps}.json"], check=True).stdout)
        u, eff = r["uncertainty"], r["prediction"]["scaling_efficiency"]
        assert u["low"] <= eff <= u["high"] and u["low"] < u["high"] and u["samples"] == steps
        widths.append(u["high"] - u["low"])
    assert widths[1] < widths[0]
    stated = json.loads(run([*base, "--step-cv", 0.05], check=True).stdout)
    assert stated["uncertainty"] is None  # a stated spread is an assumption, printed as one
