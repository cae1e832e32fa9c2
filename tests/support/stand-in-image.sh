#!/bin/sh
# Build a stand-in image: the busybox test image (busybox-image.sh) with the files of an
# overlay directory added and its config changed, pushed with skopeo. Tests that cannot
# pull a real image (no internet) push one of these under the real image's name.
# usage: stand-in-image.sh WORKDIR DEST OVERLAY_DIR [UMOCI_CONFIG_ARG...]
#   DEST is a skopeo destination, e.g. docker://127.0.0.1:5000/library/eclipse-mosquitto:2.0
#   UMOCI_CONFIG_ARG... are passed to `umoci config`, e.g. --config.entrypoint /run.sh
# The overlay's files are copied as root-owned with their modes.
set -eu
work=$1 dest=$2 overlay=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
layout="$work/layout"
sh "$here/busybox-image.sh" "$work/base" "oci:$layout:latest" >/dev/null
umoci unpack --image "$layout:latest" "$work/bundle" >/dev/null
cp -R --preserve=mode "$overlay/." "$work/bundle/rootfs/"
umoci repack --image "$layout:latest" "$work/bundle" >/dev/null
if [ $# -gt 0 ]; then
  umoci config --image "$layout:latest" "$@"
fi
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "$dest"
