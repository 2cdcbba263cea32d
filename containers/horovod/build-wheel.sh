#!/bin/sh
# Build the Horovod wheel hvdtrain runs on: Horovod's last release (0.28.1), patched for a current
# TensorFlow, with MPI and TensorFlow ops only. The one recipe that `make install` and the image use.
#   containers/horovod/build-wheel.sh PYTHON OUTDIR
# PYTHON is the interpreter of an environment that already has TensorFlow, cmake<4 and setuptools.
#
# Why each step (measured in bench/NOTES.md, "TensorFlow 2.21"):
# - patches/*.patch: 0001 leaves out the XLA ops (GPU-only; they include headers TF 2.16+ moved);
#   0002/0003 let GCC 13/14 (Debian 13) compile it: missing standard includes, and flatbuffers'
#   span assigning a const member.
# - TF 2.16+ ship tsl/xla headers that include <farmhash.h> and <highwayhash/...> without
#   shipping them: Debian's libfarmhash-dev and libhighwayhash-dev supply them. Without root they
#   are unpacked from `apt-get download` into the build directory.
# - HOROVOD_WITHOUT_GLOO: Gloo crashes under mpirun in 0.28.1 (bench/NOTES.md), and it is a third
#   of the build time.
# - --no-cache-dir: a cached wheel built against another TF gives HorovodVersionMismatchError.
set -eu
py=$1 out=$2
version=0.28.1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/hvdtrain-horovod.XXXXXX")
trap 'rm -rf "$work"' EXIT
pip="$py -m pip --disable-pip-version-check"

headers_missing() {
  for h in farmhash.h highwayhash/arch_specific.h; do
    found=
    for d in /usr/include $(echo "${CPATH:-}" | tr ':' ' '); do [ -e "$d/$h" ] && found=1; done
    [ -n "$found" ] || return 0
  done
  return 1
}
if headers_missing; then
  echo "[horovod] farmhash/highwayhash headers not installed: unpacking Debian's packages into the build dir"
  (cd "$work" && apt-get download libfarmhash-dev libhighwayhash-dev >/dev/null 2>&1) || {
    echo "[horovod] FAILED: TensorFlow's headers need farmhash.h and highwayhash/; install Debian's" \
         "libfarmhash-dev and libhighwayhash-dev (or put their headers on CPATH)" >&2; exit 1; }
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/sysroot"; done
  CPATH="$work/sysroot/usr/include${CPATH:+:$CPATH}"; export CPATH
fi

echo "[horovod] fetching the horovod==$version source"
$pip download -q --no-deps --no-binary :all: --no-cache-dir -d "$work" "horovod==$version" \
  || { echo "[horovod] FAILED: pip download horovod==$version" >&2; exit 1; }
tar -xzf "$work/horovod-$version.tar.gz" -C "$work"
for p in "$here"/patches/*.patch; do
  echo "[horovod] applying $(basename "$p")"
  patch -s -p1 -d "$work/horovod-$version" < "$p" || { echo "[horovod] FAILED: patch $p" >&2; exit 1; }
done

mkdir -p "$out"
echo "[horovod] building with MPI + TensorFlow (about 3 minutes on 2 cores)"
HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
HOROVOD_WITHOUT_GLOO=1 MAKEFLAGS="-j$(nproc)" \
  $pip wheel -q --no-deps --no-cache-dir --no-build-isolation -w "$out" "$work/horovod-$version" \
  || { echo "[horovod] FAILED: building horovod==$version; see the compiler output above" >&2; exit 1; }
echo "[horovod] built $(ls "$out"/horovod-*.whl)"
