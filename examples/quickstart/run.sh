#!/bin/sh
# berth quickstart: runs the agent on examples/quickstart/manifests, offline.
#
# The manifests name docker.io/library/busybox:1.36 as real ones would; this script starts a
# loopback registry (Debian's docker-registry), pushes a busybox image built from Debian's
# busybox-static to it, and points the agent's docker.io mirror there. Needs root.
# Ctrl-C stops the agent, then the script removes the demo containers.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=${BERTH_QUICKSTART_DIR:-/tmp/berth-quickstart}
listen=${BERTH_LISTEN:-127.0.0.1:9470}

[ "$(id -u)" = 0 ] || { echo "quickstart: run as root (containers need namespaces and cgroups)" >&2; exit 1; }
# What berth needs at run time (nft for published ports and NAT, ip for links) and what the
# demo needs (a registry, image tools, busybox).
packages="nftables iproute2 docker-registry umoci skopeo busybox-static"
for p in $packages; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
    break
  fi
done

(cd "$top" && cargo build -q -p berth)
berth="$top/target/debug/berth"

mkdir -p "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$top/tests/support/registry.sh" "$work/registry" "$port" >"$work/registry.log" 2>&1 &
registry=$!
cleanup() {
  kill "$registry" 2>/dev/null || true
  # Containers outlive the agent by design; the demo's are removed here (a fallback: the
  # normal path is the agent removing them when the manifests go, below).
  for d in /sys/fs/cgroup/*/berth-quickstart/* /sys/fs/cgroup/berth-quickstart/*; do
    [ -d "$d" ] || continue
    for pid in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  sleep 0.5
  for d in /sys/fs/cgroup/*/berth-quickstart/* /sys/fs/cgroup/*/berth-quickstart /sys/fs/cgroup/berth-quickstart/* /sys/fs/cgroup/berth-quickstart; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
  done
  for m in $(grep -o "$work/run/netns/[^ ]*" /proc/self/mountinfo 2>/dev/null); do umount -l "$m" 2>/dev/null || true; done
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^bq'); do ip link del "$l" 2>/dev/null || true; done
  nft delete table inet bq 2>/dev/null || true
  rm -rf "$work/state" "$work/run" "$work/manifests"
}
trap cleanup EXIT INT TERM
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
"$top/tests/support/busybox-image.sh" "$work/image" "docker://127.0.0.1:$port/library/busybox:1.36" >/dev/null

# The agent watches a copy: edit the files there and watch it converge.
rm -rf "$work/manifests"
cp -r "$here/manifests" "$work/manifests"
cat > "$work/agent.yaml" <<CFG
manifests: $work/manifests
stateDir: $work/state
runDir: $work/run
listen: $listen
cgroupParent: berth-quickstart
# The demo ends by emptying its manifest directory; berth refuses to prune on an empty
# directory unless told so (a half-finished git checkout must not wipe a host).
allowEmpty: true
networks:
  bridgePrefix: bq
registries:
  mirrors:
    docker.io: ["http://127.0.0.1:$port"]
CFG
echo "berth quickstart: registry on 127.0.0.1:$port, API on http://$listen"
echo "  in another shell:  $berth ps --addr $listen"
echo "                     curl -s http://$listen/v1/containers"
echo "                     tail -f $work/state/containers/hello-*/container.log"
echo "  edit, add or delete files in $work/manifests and watch berth converge; Ctrl-C to stop."
"$berth" agent --config "$work/agent.yaml" &
agent=$!
stop() {
  # The way an operator empties a host: remove the manifests, let berth remove everything.
  echo "quickstart: removing the manifests; berth stops and removes the containers"
  rm -f "$work/manifests"/*
  for _ in $(seq 100); do
    [ "$("$berth" ps --addr "$listen" -o json 2>/dev/null)" = "[]" ] && break
    sleep 0.2
  done
  kill -TERM "$agent" 2>/dev/null || true
}
trap stop INT TERM
# BERTH_QUICKSTART_SECONDS: stop on its own after that long (for a smoke test).
if [ -n "${BERTH_QUICKSTART_SECONDS:-}" ]; then
  # TERM, not INT: a shell started in the background (`run.sh &`) ignores SIGINT for good.
  (sleep "$BERTH_QUICKSTART_SECONDS"; kill -TERM $$) &
fi
wait "$agent" || true
wait "$agent" 2>/dev/null || true
