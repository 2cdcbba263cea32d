"""`hvdtrain bench` smoke runs (a few steps, small model): the numbers exist and are sane.
Speed targets live in `make bench`, never here."""

import json

import pytest
from bench_suite import table

from conftest import cli_env, run
from hvdtrain.cluster import topology


def _bench(*args, np=None):
    res = run(["bench", "--json", "--model", "resnet18", "--image-size", 32, "--batch-size", 8,
               "--steps", 2, "--windows", 2, "--warmup", 1, *args], np=np)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_train_bench_reports_throughput_breakdown_and_peak():
    r = _bench()
    assert r["images_per_second"] > 0 and len(r["window_rates_per_rank"]) == 2
    assert r["step_ms"] > 0 and r["input_wait_ms_per_step"] >= 0 and r["allreduce_ms_per_step"] >= 0
    assert r["peak_gflops"]["fp32"] > 0 and 0 < r["share_of_peak"] < 1.5
    # bf16 peak: measured where oneDNN has bfloat16 kernels, None (not an abort) elsewhere
    assert (r["peak_gflops"]["bf16"] is None) == (not topology.bf16_supported())
    assert r["gflops_per_image"] == pytest.approx(0.22, abs=0.03)  # resnet18 @ 32 px, fwd+bwd


@pytest.mark.integration
def test_train_bench_under_mpirun_is_global(demo_records):
    r = _bench("--no-peak", "--input", demo_records, np=2)
    assert r["num_ranks"] == 2
    assert r["images_per_second"] == pytest.approx(2 * r["images_per_second_per_rank"], rel=0.01)


def test_eval_and_prep_modes(tmp_path):
    r = _bench("--eval", "--no-peak", "--precision", "bf16" if topology.bf16_supported() else "fp32")
    assert r["images_per_second"] > 0 and "allreduce_ms_per_step" not in r
    res = run(["bench", "--json", "--prep", "--prep-images", 40])
    assert res.returncode == 0, res.stderr
    p = json.loads(res.stdout.strip().splitlines()[-1])
    assert p["images"] == 40 and p["images_per_second_1_worker"] > 0 and p["scaling_efficiency"] > 0


def test_bf16_without_onednn_bf16_kernels_is_refused_by_name():
    """Below AVX-512 TensorFlow aborts inside a bf16 kernel; hvdtrain refuses before it loads."""
    res = run(["bench", "--model", "resnet18", "--image-size", 32, "--batch-size", 8, "--steps", 1,
               "--windows", 1, "--warmup", 1, "--no-peak", "--precision", "bf16"],
              env=cli_env(ONEDNN_MAX_CPU_ISA="AVX2"))
    assert res.returncode != 0
    assert "--precision bf16: ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN below" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_ratio_table_marks_targets():
    row = {"images_per_second": 10.0}
    result = {"machine": {"cpu": "X", "isa": ["avx512f"], "cores": 2}, "seconds": 1, "rows": [
        {"row": "a", "baseline": row, "hvdtrain": {"images_per_second": 12.0}, "ratio": 1.2,
         "target": 1.1},
        {"row": "b", "baseline": row, "hvdtrain": {"images_per_second": 10.5}, "ratio": 1.05,
         "target": 1.5}]}
    text = table(result)
    assert "1.20" in text and "yes" in text and "NO" in text
