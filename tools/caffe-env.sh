# Sourced by tools/caffe, tools/pycaffe and tools/setup_caffe.sh: where the stock Caffe rootfs
# lives and how to run its programs without chroot (through the rootfs's own dynamic loader).

# What goes into the rootfs; changing any of it gives a new cache directory.
CAFFE_SUITE=bullseye
CAFFE_PACKAGES=caffe,python3-caffe
CAFFE_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CAFFE_ROOT_KEY=$(printf '%s|%s|minbase|%s|v1' "$CAFFE_SUITE" "$CAFFE_PACKAGES" "$CAFFE_MIRROR" \
  | sha256sum | cut -c1-12)
CAFFE_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/sepnets
# SEPNETS_CAFFE_ROOT points at a rootfs made elsewhere; by default it is the cached one.
CAFFE_ROOTFS=${SEPNETS_CAFFE_ROOT:-$CAFFE_CACHE/caffe-$CAFFE_SUITE-$CAFFE_ROOT_KEY}
# Written last by setup_caffe.sh, after the smoke test: a rootfs without it is never used.
CAFFE_ROOTFS_MARK=.sepnets-rootfs-complete

caffe_rootfs_ready() {
  [ -f "$CAFFE_ROOTFS/$CAFFE_ROOTFS_MARK" ]
}

# Sets CAFFE_LOADER and CAFFE_LIBPATH for the rootfs in $1.
caffe_loader_env() {
  local root=$1 d link target dirs=()
  CAFFE_LOADER=$(ls "$root"/usr/lib/x86_64-linux-gnu/ld-2.*.so 2>/dev/null | head -n1)
  # The library directories the rootfs's ld.so.conf names, read inside the rootfs.
  for d in $(cat "$root"/etc/ld.so.conf.d/*.conf 2>/dev/null | grep '^/'); do
    [ -d "$root$d" ] && dirs+=("$root$d")
  done
  dirs+=("$root/lib" "$root/usr/lib")
  # Debian's alternatives (BLAS, LAPACK) are absolute symlinks that would resolve on the
  # host: name the directories they point to instead.
  for link in "$root"/etc/alternatives/*.so*; do
    [ -L "$link" ] || continue
    target=$(readlink "$link")
    case $target in /*) dirs+=("$root$(dirname "$target")") ;; esac
  done
  CAFFE_LIBPATH=$(IFS=:; echo "${dirs[*]}")
}

caffe_not_ready_message() {
  echo "stock Caffe is not set up: no complete rootfs at $CAFFE_ROOTFS; run 'make setup'" \
       "(needs root and debootstrap), or set CAFFE=/path/to/your/caffe" >&2
}
