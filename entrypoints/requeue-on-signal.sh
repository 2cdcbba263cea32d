#!/bin/bash
# Run a training job so that a batch job saves and continues by itself:
#   requeue-on-signal.sh COMMAND [ARGS...]      (the Slurm and PBS templates call it)
# The batch system's warning (USR1: Slurm's `--signal=B:USR1@180`) or its TERM (time limit,
# scancel, preemption) reaches COMMAND as SIGUSR1. COMMAND is the launcher that execs mpirun, and
# mpirun forwards SIGUSR1 to every rank: the ranks agree at the next step boundary, rank 0 saves a
# checkpoint, and every process exits 75 (saved, not finished). On 75 the job is requeued
# (Slurm: `scontrol requeue`, PBS: `qrerun`) and its next run resumes from that checkpoint, at most
# HVDTRAIN_MAX_RESTARTS times (default 3; Slurm counts them in SLURM_RESTART_COUNT).
set -uo pipefail
max=${HVDTRAIN_MAX_RESTARTS:-3}
case "$max" in
  ''|*[!0-9]*) echo "requeue-on-signal: error: HVDTRAIN_MAX_RESTARTS='$max' is not a number" >&2; exit 2 ;;
esac
[ $# -gt 0 ] || { echo "requeue-on-signal: error: no command to run" >&2; exit 2; }
restarts=${SLURM_RESTART_COUNT:-${PBS_RUN_COUNT:-0}}
echo "requeue-on-signal: $(date +%T) attempt $((restarts + 1)) of at most $((max + 1))"

"$@" &
pid=$!
forward() {
  echo "requeue-on-signal: $(date +%T) $1: asking the ranks to save (SIGUSR1 to $pid)"
  kill -USR1 "$pid" 2>/dev/null || true
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
while true; do
  wait "$pid"
  status=$?
  kill -0 "$pid" 2>/dev/null || break  # wait ended for a signal we trapped: the job still runs
done
if [ "$status" -eq 75 ]; then
  if [ "$restarts" -ge "$max" ]; then
    echo "requeue-on-signal: saved (75), but the restart budget is spent ($restarts of" \
      "HVDTRAIN_MAX_RESTARTS=$max): not requeued; resubmit to continue from the checkpoint" >&2
  elif [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "requeue-on-signal: saved (75): scontrol requeue $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
  elif [ -n "${PBS_JOBID:-}" ]; then
    echo "requeue-on-signal: saved (75): qrerun $PBS_JOBID"
    qrerun "$PBS_JOBID"
  fi
fi
exit "$status"
