#!/bin/sh
# Build a small OCI image from Debian's busybox-static with umoci and push it with skopeo.
# usage: busybox-image.sh WORKDIR DEST [CMD...]
#   DEST is a skopeo destination, e.g. docker://127.0.0.1:5000/library/busybox:1.36
# The image has /bin/busybox plus applet links, /etc/passwd, /etc/group, /etc/motd,
# WorkingDir /, Env PATH and IMAGE_ENV=from-image, Cmd [sh]; $IMAGE_USER sets its User and
# $IMAGE_ARCH its architecture.
set -eu
work=$1 dest=$2
shift 2
busybox=${BUSYBOX:-/bin/busybox}
rm -rf "$work"
mkdir -p "$work"
layout="$work/layout"
umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --rootless --image "$layout:latest" "$work/bundle" >/dev/null 2>&1 || umoci unpack --image "$layout:latest" "$work/bundle"
root="$work/bundle/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/data"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo "hello from the berth test image" > "$root/etc/motd"
chmod 1777 "$root/tmp"
umoci repack --image "$layout:latest" "$work/bundle" >/dev/null
umoci config --image "$layout:latest" \
  --config.env PATH=/bin:/usr/bin --config.env IMAGE_ENV=from-image \
  --config.workingdir / --config.cmd sh ${IMAGE_ARCH:+--architecture "$IMAGE_ARCH"} \
  ${IMAGE_USER:+--config.user "$IMAGE_USER"}
if [ $# -gt 0 ]; then
  args=""
  for a in "$@"; do args="$args --config.cmd $a"; done
  # shellcheck disable=SC2086
  umoci config --image "$layout:latest" --clear=config.cmd $args
fi
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "$dest"
