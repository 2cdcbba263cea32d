#!/bin/sh
# Open MPI's "ssh" for the simulated cluster: `--mca plm_rsh_agent tests/support/rsh-agent.sh`.
# Open MPI calls AGENT HOST COMMAND-STRING; the command runs on that node (node-enter.sh), no ssh.
host=$1; shift
exec "$(dirname "$0")/node-enter.sh" "$host" "$HVT_CLUSTER_DIR" /bin/sh -c "$*"
