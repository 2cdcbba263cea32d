"""Heartbeats: the rank that stops writing them is the one the stall message names."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hvdtrain.cluster import watchdog
from hvdtrain.run_dir import RunDir


def test_stale_rank_is_the_one_that_stopped_beating(tmp_path):
    d = RunDir(tmp_path).heartbeats
    for rank in range(3):
        watchdog.write_heartbeat(d, rank, step=7)
    beats = watchdog.read_heartbeats(d, size=3)
    assert [b["rank"] for b in beats] == [0, 1, 2] and all(b["step"] == 7 for b in beats)
    now = time.time()
    beats[1]["time"] = now - 30  # rank 1 froze 30 s ago
    stale = watchdog.stale_ranks(beats, now, older_than=5)
    assert [(b["rank"], round(age)) for b, age in stale] == [(1, 30)]


def test_heartbeats_of_ranks_outside_the_job_or_unreadable_are_ignored(tmp_path):
    d = RunDir(tmp_path).heartbeats
    watchdog.write_heartbeat(d, 0, step=1)
    watchdog.write_heartbeat(d, 5, step=1)  # an earlier, larger job
    (d / "rank-00001").write_text("{half a json")
    assert [b["rank"] for b in watchdog.read_heartbeats(d, size=2)] == [0]
    assert not list(d.glob(".rank-*"))  # no temporary files left behind


def test_culprit_message_names_host_pid_and_step(tmp_path):
    d = RunDir(tmp_path).heartbeats
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
    d = RunDir(tmp_path).heartbeats
    w = watchdog.Watchdog(timeout=0, rank=0, size=2, heartbeat_dir=d)
    w.kick(8)
    w.entering_step()  # rank 0 is in step 9
    watchdog.write_heartbeat(d, 1, step=7, in_step=True)  # rank 1 never finished step 8
    msg = w._culprits()
    assert msg.startswith("rank 1 (host ") and "stuck inside step 8" in msg


def test_every_rank_has_a_heartbeat_from_the_start_and_unseen_ranks_are_named(tmp_path):
    d = RunDir(tmp_path).heartbeats
    w = watchdog.Watchdog(timeout=30, rank=1, size=3, heartbeat_dir=d)  # not armed: no step yet
    assert json.loads((d / "rank-00001").read_text())["step"] == 0
    w.stop()
    assert not (d / "rank-00001").exists()
    w0 = watchdog.Watchdog(timeout=0, rank=0, size=3, heartbeat_dir=d)
    w0.kick(4)
    watchdog.write_heartbeat(d, 1, step=4)
    msg = w0._culprits()  # rank 2's file is not here: another node's disk, or it never started
    assert "no heartbeat is visible from rank 2 (their node" in msg and "stuck inside a collective" not in msg


def test_rank_frozen_before_its_first_step_is_named(tmp_path):
    """The CI case: rank 1 SIGSTOPped a few steps in, before its thread's first periodic beat."""
    d = RunDir(tmp_path).heartbeats
    code = ("import sys, time; from pathlib import Path; from hvdtrain.cluster.watchdog import Watchdog; "
            "Watchdog(4, 1, 2, Path(sys.argv[1])); print('up', flush=True); time.sleep(120)")
    peer = subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline() == "up\n"
        os.kill(peer.pid, signal.SIGSTOP)
        while Path(f"/proc/{peer.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
            time.sleep(0.01)  # stopped for sure: no beat can land after the one read below
        w0 = watchdog.Watchdog(timeout=0, rank=0, size=2, heartbeat_dir=d)  # beats stale after 3 s
        w0.kick(5)
        w0.entering_step()
        last_beat = json.loads((d / "rank-00001").read_text())["time"]
        time.sleep(max(0.0, last_beat + 3.5 - time.time()))
        msg = w0._culprits()
        assert msg.startswith(f"rank 1 (host {socket.gethostname()}, pid {peer.pid})"), msg
        assert "not been heard from" in msg and "after step 0" in msg
    finally:
        peer.kill()
        peer.wait()
