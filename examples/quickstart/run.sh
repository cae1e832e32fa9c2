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
for p in docker-registry umoci skopeo busybox-static; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry umoci skopeo busybox-static
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
  # Containers outlive the agent by design; the demo's are removed here.
  for d in /sys/fs/cgroup/*/berth-quickstart/* /sys/fs/cgroup/berth-quickstart/*; do
    [ -d "$d" ] || continue
    for pid in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  sleep 0.5
  for d in /sys/fs/cgroup/*/berth-quickstart/* /sys/fs/cgroup/*/berth-quickstart /sys/fs/cgroup/berth-quickstart/* /sys/fs/cgroup/berth-quickstart; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
  done
  rm -rf "$work/state" "$work/run"
}
trap cleanup EXIT INT TERM
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
"$top/tests/support/busybox-image.sh" "$work/image" "docker://127.0.0.1:$port/library/busybox:1.36" >/dev/null

cat > "$work/agent.yaml" <<CFG
manifests: $here/manifests
stateDir: $work/state
runDir: $work/run
listen: $listen
cgroupParent: berth-quickstart
registries:
  mirrors:
    docker.io: ["http://127.0.0.1:$port"]
CFG
echo "berth quickstart: registry on 127.0.0.1:$port, API on http://$listen"
echo "  in another shell:  $berth ps --addr $listen"
echo "                     curl -s http://$listen/v1/containers"
echo "                     tail -f $work/state/containers/hello-*/container.log"
echo "  edit or delete files in $here/manifests and watch berth converge; Ctrl-C to stop."
"$berth" agent --config "$work/agent.yaml" ${BERTH_QUICKSTART_ARGS:-} &
agent=$!
trap 'kill -TERM $agent 2>/dev/null || true' INT TERM
wait "$agent" || true
wait "$agent" 2>/dev/null || true
