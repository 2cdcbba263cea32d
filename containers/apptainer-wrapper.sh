#!/bin/sh
# `apptainer` from the root file system that containers/install-apptainer.sh made. Apptainer refuses
# a plain chroot ("weak chrooted environment"), so this enters a private mount namespace, makes
# that root the real root (pivot_root) with the host's directories a job needs bound in, and runs
# apptainer there. Every mount disappears when the command ends.
# Extra host directories: APPTAINER_WRAPPER_BINDS=/data:/models (colon-separated).
root=${APPTAINER_WRAPPER_ROOT:-@ROOT@}
if [ "${_APPTAINER_WRAPPED:-}" != 1 ]; then
  export _APPTAINER_WRAPPED=1 _APPTAINER_CWD="$PWD"
  exec unshare -m --propagation private "$0" "$@"
fi
set -eu
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
for d in /dev /sys; do mount --rbind "$d" "$root$d"; done
binds="/tmp:/work:/srv:/root:${HOME:-/root}:$_APPTAINER_CWD:${APPTAINER_WRAPPER_BINDS:-}"
old_ifs=$IFS; IFS=:
for d in $binds; do
  [ -n "$d" ] && [ -d "$d" ] || continue
  mkdir -p "$root$d" && mount --rbind "$d" "$root$d"
done
IFS=$old_ifs
mkdir -p "$root/.oldroot"
cd "$root"
pivot_root . .oldroot
umount -l /.oldroot
cd "$_APPTAINER_CWD" 2>/dev/null || cd /
unset _APPTAINER_WRAPPED _APPTAINER_CWD
exec /usr/bin/apptainer "$@"
