#!/bin/sh
# Run hvdtrain from the image on a cluster: host mpirun starts one container per rank (hybrid model).
#
#   NP=512 PPN=2 SIF=hvdtrain.sif BINDS=/scratch,/models \
#     entrypoints/mpirun-singularity.sh train --train-batch-size 24576 --train-steps 4680 ...
#
# NP     ranks in all (default 2)            PPN   ranks per node (default: one per socket of this
# SIF    image file (default hvdtrain.sif)         node: the seed's 2 workers on 2-socket nodes;
#                                                  1 on one socket, where 1 rank x all cores is faster)
# BINDS  comma-separated host dirs to mount (data, model dir)
# HOSTFILE  optional hostfile for Open MPI / Intel MPI        DRY_RUN=1 prints the command only
#
# The hybrid model needs the host's MPI to match the image's (same implementation, same version
# family: Open MPI 4.1 for the default image, Intel MPI 2021 for MPI=intel). A mismatch shows as
# every rank printing "rank 0 of 1". The alternative is the bind model: mount the host's MPI
# into the container (BINDS=/opt/hostmpi) and put it first on LD_LIBRARY_PATH.
# Each rank is bound to its socket; inside, the entrypoint sizes the thread pools to the cores of
# that binding (the seed's intra_op=22, inter_op=2 on 24-core sockets) unless OMP_NUM_THREADS is set.
set -eu
sockets=$(lscpu -p=SOCKET 2>/dev/null | grep -v '^#' | sort -u | wc -l)
NP=${NP:-2} PPN=${PPN:-${sockets:-1}} SIF=${SIF:-hvdtrain.sif} BINDS=${BINDS:-}
[ "$PPN" -ge 1 ] 2>/dev/null || PPN=1
fail() { echo "mpirun-singularity: error: $*" >&2; exit 2; }
if [ "${DRY_RUN:-0}" = 1 ]; then  # print the command, e.g. for another machine: check nothing
  runner=$(command -v apptainer || command -v singularity || echo singularity)
else  # what would otherwise fail on every node at once, minutes later, is checked here first
  [ -f "$SIF" ] || fail "SIF=$SIF: no such image file (build it with \`make sif\`, or set SIF to its path)"
  old_ifs=$IFS; IFS=,
  for b in $BINDS; do
    src=${b%%:*}
    [ -e "$src" ] || fail "BINDS: $src does not exist on $(hostname) (every bind path must exist on every node)"
  done
  IFS=$old_ifs
  [ -z "${HOSTFILE:-}" ] || [ -f "$HOSTFILE" ] || fail "HOSTFILE=$HOSTFILE: no such file"
  runner=$(command -v apptainer || command -v singularity) || fail "neither apptainer nor singularity is on PATH"
fi
mpirun_bin=${MPIRUN:-mpirun}
flavour=$($mpirun_bin --version 2>/dev/null | head -n 1 || true)
env_names="OMP_NUM_THREADS KMP_BLOCKTIME KMP_AFFINITY HOROVOD_FUSION_THRESHOLD HOROVOD_CYCLE_TIME HOROVOD_STALL_CHECK_TIME_SECONDS"
case "$flavour" in
  *"Intel(R) MPI"*)
    set -- -np "$NP" -ppn "$PPN" -genv I_MPI_PIN_DOMAIN socket ${HOSTFILE:+-f "$HOSTFILE"} \
      "$runner" exec ${BINDS:+--bind "$BINDS"} "$SIF" /usr/local/bin/hvdtrain-entrypoint "$@" ;;
  *)  # Open MPI (default)
    # On SIGTERM (scancel, a time limit) mpirun kills the ranks about 1 s later by default, before
    # rank 0 can finish the checkpoint the ranks agree on; give them 10 s (Slurm's KillWait bounds it).
    export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-10}
    exports=""
    for n in $env_names; do eval "[ -n \"\${$n:-}\" ]" && exports="$exports -x $n"; done
    # shellcheck disable=SC2086
    set -- -np "$NP" --npernode "$PPN" --map-by socket --bind-to socket --report-bindings $exports \
      ${HOSTFILE:+--hostfile "$HOSTFILE"} \
      "$runner" exec ${BINDS:+--bind "$BINDS"} "$SIF" /usr/local/bin/hvdtrain-entrypoint "$@" ;;
esac
if [ "${DRY_RUN:-0}" = 1 ]; then echo "$mpirun_bin $*"; exit 0; fi
exec "$mpirun_bin" "$@"
