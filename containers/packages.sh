#!/bin/sh
# Install the Debian packages one image stage needs: packages.sh runtime|build openmpi|intel
# or what `make install` needs on a Debian/Ubuntu host (root): packages.sh host openmpi|present
# One place decides the lists so the Dockerfile stays readable and both MPI variants stay in step.
set -eu
stage=$1 mpi=$2
# TensorFlow 2.16+'s include tree needs these headers to build Horovod (containers/horovod/).
tf_headers="libfarmhash-dev libhighwayhash-dev"
if [ "$stage" = host ]; then
  # Only what is missing, and the host's apt lists stay: a re-run costs a dpkg query.
  want="g++ make patch $tf_headers"
  [ "$mpi" = openmpi ] && want="$want openmpi-bin libopenmpi-dev"
  py=$(command -v "${PYTHON:-python3}" || true)
  case "$(readlink -f "$py")" in  # Debian's own Python: its venv and headers are separate packages
    /usr/bin/python3.*) v=$(basename "$(readlink -f "$py")"); want="$want $v-venv $v-dev" ;;
  esac
  missing=
  for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -n "$missing" ] || exit 0
  echo "[install] apt-get install$missing"
  # shellcheck disable=SC2086
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; } \
    || { echo "[install] FAILED: apt-get install$missing" >&2; exit 1; }
  exit 0
fi
pkgs="ca-certificates procps libgomp1"
# A python:3 base image has Python in /usr/local; a plain Debian base (debootstrap) does not.
[ -x /usr/local/bin/python3 ] || pkgs="$pkgs python3 python3-venv"
case "$mpi" in
  # PyPI's Open MPI 4.1 wheel is in the venv (Dockerfile). Its mpirun looks for ssh (plm_rsh_agent)
  # at start, even for ranks on one node, and stops without it: a minbase Debian has none.
  openmpi) if [ "$stage" = runtime ]; then pkgs="$pkgs openssh-client"; fi ;;
  intel)   pkgs="$pkgs libpsm2-2" ;;   # Omni-Path (PSM2) for libfabric's psmx2 provider
  *) echo "packages.sh: MPI must be openmpi or intel, not '$mpi'" >&2; exit 2 ;;
esac
if [ "$stage" = build ]; then
  pkgs="$pkgs g++ make cmake patch $tf_headers"
  [ -x /usr/local/bin/python3 ] || pkgs="$pkgs python3-dev"
fi
apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
rm -rf /var/lib/apt/lists/*
echo "packages.sh: installed for $stage/$mpi: $pkgs"
