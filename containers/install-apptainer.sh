#!/bin/sh
# Install Apptainer where the host has none: Debian bookworm has no apptainer package, sid has
# 1.4 (which needs trixie's glibc). So: debootstrap a minimal trixie root file system, install sid's
# apptainer into it, and run it through DEST/bin/apptainer (a wrapper that pivots into that root in
# a private mount namespace, with the host's /tmp, /dev, /sys, $HOME, /work, /srv and the current
# directory bound in). Needs root and debootstrap. About a minute.
#   containers/install-apptainer.sh DEST        -> DEST/bin/apptainer
set -eu
dest=$(realpath -m "$1")
root=$dest/rootfs
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -x "$dest/bin/apptainer" ] && [ -x "$root/usr/bin/apptainer" ]; then
  echo "[sif] Apptainer already installed in $dest"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "[sif] installing Apptainer needs root (or put apptainer on PATH)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "[sif] debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
rm -rf "$root.partial" && mkdir -p "$root.partial"
echo "[sif] installing Apptainer into $dest: debootstrap trixie, then sid's apptainer (about a minute)"
debootstrap --variant=minbase trixie "$root.partial" "$mirror" >/dev/null
echo "deb $mirror sid main" > "$root.partial/etc/apt/sources.list.d/sid.list"
# sid's Release file here can be past its Valid-Until: only sid's apptainer is taken from it.
chroot "$root.partial" apt-get -qq -o Acquire::Check-Valid-Until=false update >/dev/null
chroot "$root.partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apptainer >/dev/null
# root here lacks CAP_SYS_RESOURCE: with `full`, every exec fails asking for a capability set.
sed -i 's/^root default capabilities = .*/root default capabilities = file/' "$root.partial/etc/apptainer/apptainer.conf"
rm -rf "$root" && mv "$root.partial" "$root"
mkdir -p "$dest/bin"
sed "s|@ROOT@|$root|" "$(dirname "$0")/apptainer-wrapper.sh" > "$dest/bin/apptainer.tmp"
chmod 755 "$dest/bin/apptainer.tmp" && mv "$dest/bin/apptainer.tmp" "$dest/bin/apptainer"
echo "[sif] Apptainer $("$dest/bin/apptainer" --version) installed: $dest/bin/apptainer"
