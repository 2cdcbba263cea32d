#!/bin/bash
# Run a training job so that a batch job saves, heals and continues by itself:
#   run-unattended.sh COMMAND [ARGS...]      (the Slurm and PBS templates exec it as the batch shell)
#
# Signals. The batch system's warning (USR1: Slurm's `--signal=B:USR1@180`) or its TERM (time
# limit, scancel, preemption) reaches COMMAND as SIGUSR1. COMMAND is the launcher that execs
# mpirun, and mpirun forwards SIGUSR1 to every rank: the ranks agree at the next step boundary,
# rank 0 saves a checkpoint, and every process exits 75 (saved, not finished). On 75 the job is
# requeued (Slurm: `scontrol requeue`, PBS: `qrerun`) and its next run resumes from that checkpoint.
#
# Lost nodes. When COMMAND fails and HOSTFILE names more than one host, every host is probed
# (`srun --overlap` under Slurm, else HVDTRAIN_PROBE, default ssh) for HVDTRAIN_PROBE_SECONDS (20).
# The hosts that do not answer are left out and COMMAND runs again at once, inside the same
# allocation (the templates ask Slurm for --no-kill), on the hosts left: NP shrinks in proportion,
# HOSTFILE is rewritten. If the global batch (--train-batch-size, else hvdtrain's default 256) does
# not divide over the ranks left, the job is requeued without the lost hosts instead. A failure
# with every host answering is an error of the run itself: the job ends with its status.
#
# Requeues and restarts together are at most HVDTRAIN_MAX_RESTARTS (default 3; Slurm counts its
# requeues in SLURM_RESTART_COUNT, PBS in PBS_RUN_COUNT). hvdtrain itself records every attempt,
# its hosts, the step it resumed from and the time lost (MODEL/attempts.jsonl, `hvdtrain report`).
set -uo pipefail
say() { echo "run-unattended: $(date +%T) $*"; }
max=${HVDTRAIN_MAX_RESTARTS:-3}
case "$max" in
  ''|*[!0-9]*) echo "run-unattended: error: HVDTRAIN_MAX_RESTARTS='$max' is not a number" >&2; exit 2 ;;
esac
probe_secs=${HVDTRAIN_PROBE_SECONDS:-20}
case "$probe_secs" in
  ''|*[!0-9]*) echo "run-unattended: error: HVDTRAIN_PROBE_SECONDS='$probe_secs' is not a number" >&2; exit 2 ;;
esac
[ $# -gt 0 ] || { echo "run-unattended: error: no command to run" >&2; exit 2; }
requeues=${SLURM_RESTART_COUNT:-${PBS_RUN_COUNT:-0}}
restarts=0  # inside this allocation

global_batch() {  # the run's --train-batch-size (either spelling, "=" or not); hvdtrain's default else
  local want=0 a
  for a in "$@"; do
    if [ "$want" = 1 ]; then echo "$a"; return; fi
    case "$a" in
      --train-batch-size=*|--train_batch_size=*) echo "${a#*=}"; return ;;
      --train-batch-size|--train_batch_size) want=1 ;;
    esac
  done
  echo 256  # TrainConfig.train_batch_size (tests/test_structure.py keeps the two equal)
}

alive() {  # does host $1 run a command within probe_secs?
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    timeout "$probe_secs" srun --overlap --nodes=1 --ntasks=1 --nodelist="$1" true >/dev/null 2>&1
  else
    # shellcheck disable=SC2086
    timeout "$probe_secs" ${HVDTRAIN_PROBE:-ssh -o BatchMode=yes -o ConnectTimeout=10} "$1" true >/dev/null 2>&1
  fi
}

requeue() {  # $1: hosts to leave out (comma-separated) or empty
  if [ $((requeues + restarts)) -ge "$max" ]; then
    echo "run-unattended: the restart budget is spent ($((requeues + restarts)) of" \
      "HVDTRAIN_MAX_RESTARTS=$max): not requeued; resubmit to continue from the checkpoint" >&2
  elif [ -n "${SLURM_JOB_ID:-}" ]; then
    if [ -n "$1" ]; then
      say "scontrol update JobId=$SLURM_JOB_ID ExcNodeList=$1"
      scontrol update JobId="$SLURM_JOB_ID" ExcNodeList="$1" || true
    fi
    say "scontrol requeue $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
  elif [ -n "${PBS_JOBID:-}" ]; then
    say "qrerun $PBS_JOBID${1:+ (leave out $1 when it is resubmitted)}"
    qrerun "$PBS_JOBID"
  fi
}

while true; do
  say "attempt $((requeues + restarts + 1)) of at most $((max + 1))${NP:+: $NP rank(s)}"
  "$@" &
  pid=$!
  stopping=0
  forward() {
    stopping=1
    say "$1: asking the ranks to save (SIGUSR1 to $pid)"
    kill -USR1 "$pid" 2>/dev/null || true
  }
  trap 'forward USR1' USR1
  trap 'forward TERM' TERM
  while true; do
    wait "$pid"
    status=$?
    kill -0 "$pid" 2>/dev/null || break  # wait ended for a signal we trapped: the job still runs
  done
  [ "$status" -eq 0 ] && exit 0
  if [ "$status" -eq 75 ]; then
    say "saved (75)"
    requeue ""
    exit 75
  fi
  hosts=$( [ -n "${HOSTFILE:-}" ] && [ -f "$HOSTFILE" ] && awk '{print $1}' "$HOSTFILE" | awk '!seen[$0]++')
  if [ "$stopping" = 1 ] || [ "$(echo "$hosts" | grep -c .)" -lt 2 ]; then
    exit "$status"
  fi
  say "the run failed (status $status): probing $(echo "$hosts" | paste -sd, -) (${probe_secs} s each)"
  lost=""
  for h in $hosts; do alive "$h" || lost="$lost $h"; done
  lost=$(echo $lost | tr ' ' ',')
  if [ -z "$lost" ]; then
    say "every host answers: not a lost node; the job ends with status $status"
    exit "$status"
  fi
  without() { awk -v lost="$lost" 'BEGIN { n = split(lost, a, ","); for (i = 1; i <= n; i++) out[a[i]] = 1 }
                                    !($1 in out)' "$@"; }
  left=$(echo "$hosts" | without)
  total=$(echo "$hosts" | grep -c .)
  kept=$(echo "$left" | grep -c .)
  np=$(( ${NP:-$total} * kept / total ))
  batch=$(global_batch "$@")
  if [ $((requeues + restarts)) -ge "$max" ]; then
    echo "run-unattended: lost $lost, but the restart budget is spent ($((requeues + restarts)) of" \
      "HVDTRAIN_MAX_RESTARTS=$max): the job ends; resubmit without $lost to continue" >&2
    exit "$status"
  fi
  if [ "$kept" -lt 1 ] || [ "$np" -lt 1 ] || [ $((batch % np)) -ne 0 ]; then
    say "lost $lost; the global batch $batch does not divide over the $np rank(s) left: requeueing without it"
    requeue "$lost"
    exit "$status"
  fi
  restarts=$((restarts + 1))
  next=$(mktemp)
  without "$HOSTFILE" > "$next"
  export HOSTFILE=$next NP=$np
  say "lost $lost: restarting at once on $(echo "$left" | paste -sd, -), $np rank(s), in this allocation"
done
