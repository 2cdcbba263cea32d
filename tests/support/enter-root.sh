#!/bin/sh
# Run a command inside the Debian root $HVD_ROOT as root, in a private mount namespace: proc, dev,
# sys, a fresh /tmp and /dev/shm, and the host dirs in $HVD_BINDS (colon-separated, mounted at the
# same path). Every mount goes away with the namespace. Used by debian_root.py.
set -eu
[ -d "$HVD_ROOT/etc" ] || { echo "enter-root: $HVD_ROOT is not a root file system" >&2; exit 2; }
exec unshare --mount --propagation private -- sh -eu -c '
  r=$HVD_ROOT
  mount -t proc proc "$r/proc"
  mount --rbind /dev "$r/dev"
  mount -t tmpfs -o size=4g tmpfs "$r/dev/shm"
  mount --rbind /sys "$r/sys"
  mount -t tmpfs -o size=8g tmpfs "$r/tmp"
  old_ifs=$IFS; IFS=:
  for d in ${HVD_BINDS:-}; do mkdir -p "$r$d"; mount --bind "$d" "$r$d"; done
  IFS=$old_ifs
  exec chroot "$r" env -u HVD_ROOT -u HVD_BINDS "$@"
' enter-root "$@"
