#!/bin/sh
# Entrypoint of the hvdtrain image.
# 1. Thread defaults from the cores THIS container (and this MPI rank) may use, unless the user
#    set OMP_NUM_THREADS / KMP_BLOCKTIME / KMP_AFFINITY; TF_ENABLE_ONEDNN_OPTS=1 unless set (TF
#    alone enables oneDNN only on CPUs with VNNI/BF16/AMX). Nothing is baked into the image: under
#    Apptainer, %environment values would override the user's own settings.
# 2. `IMAGE train ...` runs `hvdtrain train ...`; any other command (bash, python, mpirun) runs as is.
set -eu
eval "$(python3 -m hvdtrain.cluster.topology)"
case "${1:-}" in
  ""|-*|demo-data|prep|verify|train|eval|bench|info|version) exec hvdtrain "$@" ;;
  *) exec "$@" ;;
esac
