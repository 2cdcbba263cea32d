#!/bin/sh
# Run a command as on one node of the simulated cluster (tests/support/simcluster.py): in the node's
# network namespace, with the node's hostname and its own /tmp. Paths listed in HVT_KEEP
# (colon-separated; the project, the shared dir) stay visible even when they lie under /tmp.
#   node-enter.sh NODE CLUSTER_DIR CMD [ARGS...]
node=$1 dir=$2; shift 2
exec nsenter --net="/run/netns/hvt-$node" unshare --uts --mount --propagation private \
  /bin/sh -c '
    set -e
    node=$1 dir=$2; shift 2
    hostname "$node"
    hosttmp=/run/hvt-hosttmp   # outside /tmp: the host /tmp stays reachable under it
    mkdir -p "$hosttmp" "$dir/nodes/$node/tmp"
    mount --rbind /tmp "$hosttmp"
    mount --bind "$dir/nodes/$node/tmp" /tmp
    old_ifs=$IFS; IFS=:
    for p in ${HVT_KEEP:-}; do
      case "$p" in /tmp/*) mkdir -p "$p" && mount --rbind "$hosttmp/${p#/tmp/}" "$p" ;; esac
    done
    IFS=$old_ifs
    exec "$@"' node-enter "$node" "$dir" "$@"
