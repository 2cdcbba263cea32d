"""The run's attempts (attempts.jsonl): what a stop, a requeue or a lost node cost, counted from
the lines the attempts write and the heartbeats a dead one left."""

from hvdtrain.reporting import attempts
from hvdtrain.reporting.report import render, summarize


def test_a_first_attempt_costs_nothing_and_its_end_is_recorded(tmp_path):
    rec = attempts.begin(tmp_path, ["n1", "n2", "n1"], 4, 0, [], None, now=1000.0)
    assert rec["attempt"] == 1 and rec["hosts"] == ["n1", "n2"] and "redone_seconds" not in rec
    attempts.end(tmp_path, 1, 50, "finished", 12.0, 0.5)
    s = attempts.summary(tmp_path)
    assert (s["attempts"], s["seconds_lost_to_faults"], s["hosts_left_out"]) == (1, 0.0, [])
    assert s["history"] == ["attempt 1: 4 rank(s) on n1,n2; from step 0; ended: finished at step 50"]


def test_a_stopped_attempt_costs_its_restart_and_nothing_redone(tmp_path):
    attempts.begin(tmp_path, ["n1", "n2"], 2, 0, [], None, now=1000.0)
    attempts.end(tmp_path, 1, 37, "stopped by SIGUSR1", 5.0, 0.5)
    # the checkpoint was written at the stop: the next attempt resumes at the step it stopped at
    ended = attempts.read(tmp_path)[-1]["time"]
    rec = attempts.begin(tmp_path, ["n1", "n2"], 2, 37, [], None, now=ended + 30)
    assert (rec["attempt"], rec["redone_steps"], rec["redone_seconds"]) == (2, 0, 0.0)
    assert 29 < rec["restart_seconds"] < 31 and rec["previous_ended"] == "stopped by SIGUSR1"
    attempts.end(tmp_path, 2, 60, "finished", 4.0, 0.5)
    s = attempts.summary(tmp_path)
    assert s["attempts"] == 2 and 33 < s["seconds_lost_to_faults"] < 35  # restart 30 + set-up 4


def test_a_dead_attempt_is_read_from_its_heartbeats_and_the_lost_host_named(tmp_path):
    attempts.begin(tmp_path, ["n1", "n2"], 2, 0, [], None, now=1000.0)
    # no end line: n2 died; the ranks' last beats say step 27 at t=1100
    beats = [{"rank": 0, "step": 27, "time": 1100.0, "host": "n1"},
             {"rank": 1, "step": 26, "time": 1099.0, "host": "n2"},
             {"rank": 0, "step": 99, "time": 10.0, "host": "n1"}]  # of an older run: ignored
    rec = attempts.begin(tmp_path, ["n1"], 1, 20, beats, step_seconds=2.0, now=1160.0)
    assert rec["previous_ended"] == "died" and rec["previous_last_step"] == 27
    assert (rec["redone_steps"], rec["redone_seconds"], rec["restart_seconds"]) == (7, 14.0, 60.0)
    assert rec["hosts_left_out"] == ["n2"]
    attempts.end(tmp_path, 2, 40, "finished", 6.0, 1.0)
    s = attempts.summary(tmp_path)
    assert s["hosts_left_out"] == ["n2"] and s["seconds_lost_to_faults"] == 14.0 + 60.0 + 6.0
    assert "left out n2" in s["history"][1]
    assert "after died at step 27: 7 step(s) redone (14 s)" in s["history"][1]


def test_report_shows_the_attempts_and_a_torn_line_is_skipped(tmp_path):
    attempts.begin(tmp_path, ["n1", "n2"], 2, 0, [], None, now=1000.0)
    attempts.end(tmp_path, 1, 10, "stopped by SIGTERM", 3.0, 1.0)
    attempts.begin(tmp_path, ["n1", "n2"], 2, 10, [], None)
    with open(tmp_path / "attempts.jsonl", "a") as f:
        f.write('{"event": "end", "att')  # a crash mid-write
    assert len(attempts.read(tmp_path)) == 3
    (tmp_path / "history.json").write_text('{"steps": [{"step": 10, "epoch": 1.0, "loss": 1.0, "lr": 0.1, '
                                           '"images_per_second": 5.0, "seconds": 20.0}], "evals": []}')
    text = render(summarize(tmp_path))
    assert "attempts: 2; time-to-train from the first start" in text
    assert "attempt 2: 2 rank(s) on n1,n2; from step 10; after stopped by SIGTERM at step 10" in text
