#!/bin/sh
# Make a local Debian base image when no registry is reachable (this is what `make image` uses
# with podman unless BASE_IMAGE is given): debootstrap a minimal root file system, import it.
#   containers/base-image.sh ENGINE TAG SUITE       (SUITE: trixie, the image's Debian 13)
set -eu
engine=$1 tag=$2 suite=$3
if $engine image exists "$tag" 2>/dev/null || $engine image inspect "$tag" >/dev/null 2>&1; then
  echo "base-image: $tag already present"; exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
rootfs=$(mktemp -d /var/tmp/hvdtrain-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap --variant=minbase $suite (about 30 s)"
debootstrap --variant=minbase "$suite" "$rootfs" http://deb.debian.org/debian >/dev/null
tar -C "$rootfs" -c . | $engine import - "$tag" >/dev/null
echo "base-image: imported $tag"
