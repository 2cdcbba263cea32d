"""Heartbeats: the rank that stops writing them is the one the stall message names."""

import json
import time

from hvdtrain import watchdog


def test_stale_rank_is_the_one_that_stopped_beating(tmp_path):
    d = tmp_path / watchdog.HEARTBEATS
    for rank in range(3):
        watchdog.write_heartbeat(d, rank, step=7)
    beats = watchdog.read_heartbeats(d, size=3)
    assert [b["rank"] for b in beats] == [0, 1, 2] and all(b["step"] == 7 for b in beats)
    now = time.time()
    beats[1]["time"] = now - 30  # rank 1 froze 30 s ago
    stale = watchdog.stale_ranks(beats, now, older_than=5)
    assert [(b["rank"], round(age)) for b, age in stale] == [(1, 30)]


def test_heartbeats_of_ranks_outside_the_job_or_unreadable_are_ignored(tmp_path):
    d = tmp_path / watchdog.HEARTBEATS
    watchdog.write_heartbeat(d, 0, step=1)
    watchdog.write_heartbeat(d, 5, step=1)  # an earlier, larger job
    (d / "rank-00001").write_text("{half a json")
    assert [b["rank"] for b in watchdog.read_heartbeats(d, size=2)] == [0]
    assert not list(d.glob(".rank-*"))  # no temporary files left behind


def test_culprit_message_names_host_pid_and_step(tmp_path):
    d = tmp_path / watchdog.HEARTBEATS
    w = watchdog.Watchdog(timeout=0, rank=0, size=2, heartbeat_dir=d)  # timeout 0: no thread
    w.kick(12)
    w.entering_step()  # rank 0 waits in step 13
    watchdog.write_heartbeat(d, 0, step=3)  # rank 0's own file is stale; its live state counts
    watchdog.write_heartbeat(d, 1, step=12, in_step=True)
    assert "same point" in w._culprits()
    watchdog.write_heartbeat(d, 1, step=12, in_step=False)
    assert w._culprits().startswith("rank 1 (host ") and "stuck outside the training step" in w._culprits()
    beat = json.loads((d / "rank-00001").read_text())
    (d / "rank-00001").write_text(json.dumps({**beat, "time": 1.0}))  # long ago
    msg = w._culprits()
    assert msg.startswith("rank 1 (host ") and "after step 12" in msg and "not been heard from" in msg
    w.stop()
    assert not (d / "rank-00000").exists()


def test_rank_that_never_entered_the_step_is_the_laggard():
    beats = [{"rank": 0, "step": 7, "in_step": True}, {"rank": 1, "step": 7, "in_step": False},
             {"rank": 2, "step": 7, "in_step": True}]
    assert [b["rank"] for b in watchdog.lagging_ranks(beats)] == [1]
    same = [{**b, "in_step": True} for b in beats]
    assert watchdog.lagging_ranks(same) == []  # all wait in the same collective: nobody to blame


def test_laggard_still_inside_a_step_the_others_finished_is_named_as_such(tmp_path):
    d = tmp_path / watchdog.HEARTBEATS
    w = watchdog.Watchdog(timeout=0, rank=0, size=2, heartbeat_dir=d)
    w.kick(8)
    w.entering_step()  # rank 0 is in step 9
    watchdog.write_heartbeat(d, 1, step=7, in_step=True)  # rank 1 never finished step 8
    msg = w._culprits()
    assert msg.startswith("rank 1 (host ") and "stuck inside step 8" in msg
