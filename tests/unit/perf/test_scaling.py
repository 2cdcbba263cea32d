"""`hvdtrain plan`'s cost model: its arithmetic by hand, and the CLI around it."""

import json

import pytest

from conftest import run
from hvdtrain.perf.scaling import RESNET50_PARAMS, Job, predict


def test_two_nodes_by_hand():
    # 2 nodes x 1 rank, 100 MB of gradients (two 64 MB fusion buffers), 10 Gb/s, 10 us per hop
    job = Job(nodes=2, ranks_per_node=1, global_batch=64, node_images_per_second=16.0,
              link_gbps=10.0, latency_us=10.0, params=25_000_000, fusion_mb=64.0, overlap=0.0)
    p = predict(job)
    compute = 32 / 16.0                            # 2.0 s
    link_bytes = 2 * (2 - 1) / 2 * 100e6           # 100 MB each way
    allreduce = 2 * 2 * 1 * 10e-6 + link_bytes / (10e9 / 8)  # 2 buffers x 2(p-1) hops + 0.08 s
    assert p.compute_seconds == pytest.approx(compute)
    assert p.bytes_per_node_link == pytest.approx(link_bytes)
    assert p.allreduce_seconds == pytest.approx(allreduce)
    coordination = 0.020 / 2 + 2 * 1 * 10e-6 + 2 * 1e-6  # half a 20 ms cycle + the negotiation
    assert p.coordination_seconds == pytest.approx(coordination)
    step = compute + allreduce + coordination
    assert p.step_seconds == pytest.approx(step)
    assert p.images_per_second == pytest.approx(64 / step)
    assert p.scaling_efficiency == pytest.approx(64 / step / 32)


def test_one_node_never_waits_for_the_network():
    p = predict(Job(1, 2, 64, 20.0, link_gbps=0.001))
    assert p.allreduce_seconds == 0 and p.scaling_efficiency == pytest.approx(1.0)


def test_levers_move_the_prediction_the_right_way():
    base = Job(2, 1, 64, 540.0, link_gbps=10.0)
    slow = predict(base)
    half = predict(Job(2, 1, 64, 540.0, link_gbps=10.0, compression="fp16"))
    hidden = predict(Job(2, 1, 64, 540.0, link_gbps=10.0, overlap=0.5))
    assert half.bytes_per_node_link == pytest.approx(slow.bytes_per_node_link / 2)
    assert half.images_per_second > slow.images_per_second
    assert hidden.exposed_allreduce_seconds == pytest.approx(
        max(0.0, slow.allreduce_seconds - 0.5 * slow.compute_seconds))
    starved = predict(Job(2, 1, 64, 540.0, input_images_per_second=100.0))
    assert starved.exposed_input_seconds == pytest.approx(32 / 100.0 - 32 / 540.0)


def test_plan_cli_for_the_seed_cluster():
    res = run(["plan", "--nodes", 256, "--ranks-per-node", 2, "--global-batch", 24576,
               "--node-images-per-second", 79.1, "--json"], check=True)
    r = json.loads(res.stdout)
    assert r["job"]["ranks"] == 512 and r["job"]["gradient_bytes"] == RESNET50_PARAMS * 4
    assert r["plan"]["train_steps"] == 4680
    assert r["time_to_train_seconds"] == pytest.approx(4680 * r["prediction"]["step_seconds"])
    text = run(["plan", "--nodes", 256, "--ranks-per-node", 2, "--global-batch", 24576,
                "--node-images-per-second", 79.1, "--recipe", "mlperf"], check=True).stdout
    assert "scaling efficiency" in text and "time-to-target" in text
    bad = run(["plan", "--nodes", 3, "--global-batch", 64, "--node-images-per-second", 1])
    assert bad.returncode == 1 and "--global-batch 64 must divide" in bad.stderr
    both = run(["plan", "--nodes", 2, "--global-batch", 64])
    assert both.returncode == 1 and "--measure" in both.stderr


def test_timeline_overlap_from_a_horovod_trace(tmp_path):
    """Two steps of two gradients, in Horovod's trace format (tensors as processes, the file
    closed with ']' after each record): the first allreduce starts while the second gradient is
    still being computed, so part of its time is hidden and the rest is exposed."""
    from hvdtrain.perf.timeline import load, overlap

    ev = [{"name": "process_name", "ph": "M", "pid": 0, "args": {"start_time_since_epoch_in_micros": 1}}]
    for pid, name in ((1, "grads_0"), (2, "grads_1"), (3, "xent")):
        ev.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}})
    for base in (0, 100_000):  # step 1, step 2 (microseconds)
        ev += [{"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": base + 1_000, "pid": 1},
               {"ph": "X", "name": "0", "ts": base + 1_000, "pid": 1, "dur": 0},
               {"ph": "E", "ts": base + 2_000, "pid": 1},
               {"ph": "B", "name": "ALLREDUCE", "ts": base + 2_000, "pid": 1},
               {"ph": "B", "name": "MPI_ALLREDUCE", "ts": base + 2_100, "pid": 1},
               {"ph": "E", "ts": base + 9_000, "pid": 1},
               {"ph": "E", "ts": base + 10_000, "pid": 1},
               {"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": base + 6_000, "pid": 2},
               {"ph": "E", "ts": base + 10_000, "pid": 2},
               {"ph": "B", "name": "ALLREDUCE", "ts": base + 10_000, "pid": 2},
               {"ph": "E", "ts": base + 14_000, "pid": 2},
               {"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": base + 15_000, "pid": 3},
               {"ph": "E", "ts": base + 15_500, "pid": 3},
               {"ph": "B", "name": "ALLREDUCE", "ts": base + 15_500, "pid": 3},
               {"ph": "E", "ts": base + 16_000, "pid": 3}]
    path = tmp_path / "timeline.json"
    path.write_text("[\n" + ",\n".join(json.dumps(e) for e in ev)[:-1] + "}]")
    res = overlap(load(path))
    assert res["gradient_tensors"] == 2 and len(res["steps"]) == 2
    for step in res["steps"]:
        assert step["backward_ms"] == 5.0  # first gradient ready at 1 ms, last at 6 ms
        assert step["first_allreduce_starts_ms"] == 1.0
        assert step["allreduce_busy_ms"] == 12.0  # 2-10 and 10-14
        assert step["hidden_ms"] == 4.0 and step["exposed_ms"] == 8.0  # split at 6 ms
    (tmp_path / "cut.json").write_text(path.read_text()[:-40])  # a writer killed mid-record
    assert len(load(tmp_path / "cut.json")) < len(ev)
    with pytest.raises(ValueError, match="no gradient allreduces"):
        overlap(ev[:4])
