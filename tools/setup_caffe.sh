#!/usr/bin/env bash
# Installs stock Caffe 1.0 (Debian bullseye's build of BVLC Caffe, with pycaffe) into a cached
# rootfs with debootstrap. Idempotent: a complete rootfs is reused at once; a half-made one
# (interrupted run) is thrown away and made again, never used.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/caffe-env.sh"

if [ -n "${CAFFE:-}" ]; then
  echo "setup: CAFFE=$CAFFE is set: using that caffe binary; skipping the stock Caffe rootfs."
  exit 0
fi
if caffe_rootfs_ready; then
  echo "setup: stock Caffe rootfs ready at $CAFFE_ROOTFS"
  exit 0
fi

how_else="Or point CAFFE at a caffe binary you built (make CAFFE=/path/to/caffe/build/tools/caffe ...) and PYCAFFE at a python that can 'import caffe'."
if [ "$(id -u)" != 0 ]; then
  echo "setup: installing stock Caffe needs root (debootstrap makes a Debian bullseye rootfs of ~1 GB): run 'sudo make setup'. $how_else" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null; then
  echo "setup: debootstrap is missing; installing it with apt-get"
  if ! { apt-get install -y -q debootstrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }; }; then
    echo "setup: could not install debootstrap (apt-get install debootstrap). $how_else" >&2
    exit 2
  fi
fi

mkdir -p "$CAFFE_CACHE"
partial="$CAFFE_ROOTFS.partial"
rm -rf "$partial"  # left by an interrupted run: never reused
echo "setup: debootstrap $CAFFE_SUITE with $CAFFE_PACKAGES into $partial (about 2-3 minutes, 1 GB)..."
start=$(date +%s)
if ! debootstrap --variant=minbase --include="$CAFFE_PACKAGES" "$CAFFE_SUITE" "$partial" "$CAFFE_MIRROR" \
     > "$CAFFE_CACHE/debootstrap.log" 2>&1; then
  tail -n 5 "$CAFFE_CACHE/debootstrap.log" >&2
  echo "setup: debootstrap failed; full log in $CAFFE_CACHE/debootstrap.log" >&2
  exit 1
fi
rm -rf "$partial/var/cache/apt/archives/"*.deb

# Smoke test before the rootfs may be used: the caffe tool and pycaffe must both start.
caffe_loader_env "$partial"
"$CAFFE_LOADER" --library-path "$CAFFE_LIBPATH" "$partial/usr/bin/caffe" --version >/dev/null 2>&1 || {
  echo "setup: the caffe binary in $partial does not start" >&2; exit 1; }
PYTHONHOME="$partial/usr" PYTHONPATH="$partial/usr/lib/python3/dist-packages" \
  "$CAFFE_LOADER" --library-path "$CAFFE_LIBPATH" "$partial/usr/bin/python3.9" -c 'import caffe' || {
  echo "setup: pycaffe in $partial does not import" >&2; exit 1; }

rm -rf "$CAFFE_ROOTFS"
date -u +%FT%TZ > "$partial/$CAFFE_ROOTFS_MARK"
mv "$partial" "$CAFFE_ROOTFS"
echo "setup: stock Caffe ready at $CAFFE_ROOTFS ($(( $(date +%s) - start )) s)"
