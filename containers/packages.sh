#!/bin/sh
# Install the Debian packages one image stage needs: packages.sh runtime|build openmpi|intel
# One place decides the lists so the Dockerfile stays readable and both MPI variants stay in step.
set -eu
stage=$1 mpi=$2
pkgs="ca-certificates procps libgomp1"
# A python:3.11 base image has Python in /usr/local; a plain Debian base (debootstrap) does not.
[ -x /usr/local/bin/python3.11 ] || pkgs="$pkgs python3 python3-venv"
case "$mpi" in
  openmpi) pkgs="$pkgs openmpi-bin libopenmpi3" ;;
  intel)   pkgs="$pkgs libpsm2-2" ;;   # Omni-Path (PSM2) for libfabric's psmx2 provider
  *) echo "packages.sh: MPI must be openmpi or intel, not '$mpi'" >&2; exit 2 ;;
esac
if [ "$stage" = build ]; then
  pkgs="$pkgs g++ make cmake"
  [ -x /usr/local/bin/python3.11 ] || pkgs="$pkgs python3-dev"
  [ "$mpi" = openmpi ] && pkgs="$pkgs libopenmpi-dev"
fi
apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
rm -rf /var/lib/apt/lists/*
echo "packages.sh: installed for $stage/$mpi: $pkgs"
