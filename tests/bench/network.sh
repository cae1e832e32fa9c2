#!/bin/sh
# TCP throughput and connection rate through a published port into a berth container and
# into a `podman run -p` container serving the same busybox httpd, side by side.
#
# usage: tests/bench/network.sh [SECONDS]   (as root; default 12 s of each measurement per
# engine, in 6 rounds that alternate which engine goes first, after a warm-up)
#
# Everything runs on this machine: a loopback registry, the test busybox image, a berth agent
# with its own dirs and bridge prefix, podman with its own storage and runc. All traffic goes
# to 127.0.0.1. Everything is removed at the end.
#
# podman gets explicit rlimits: its default nofile (1048576) is above the hard limit here,
# which root cannot raise without CAP_SYS_RESOURCE (this sandbox has none), and podman caps
# its own RLIMIT_NPROC at 32768, so runc fails to give a container more
# ("error setting rlimit type 7/6: operation not permitted").
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-12}
[ "$(id -u)" = 0 ] || { echo "network.sh: needs root (bridges, namespaces, nftables)" >&2; exit 1; }
for tool in docker-registry umoci skopeo curl python3 nft ip; do
  command -v "$tool" >/dev/null || { echo "network.sh: $tool is missing (hint: tests/run-all.sh installs the test packages)" >&2; exit 1; }
done

cargo build -q -p berth -p berth-tests --bin berth --bin netbench
berth=$PWD/target/debug/berth netbench=$PWD/target/debug/netbench

work=$(mktemp -d /tmp/berth-bench-XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
reg_port=$(free_port) api_port=$(free_port) berth_port=$(free_port) podman_port=$(free_port)
prefix="bn$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')"
podman_name="berth-bench-$$"
podman_args="--root $work/podman/root --runroot $work/podman/run --runtime runc --cgroup-manager cgroupfs"
podman_cgroup="berth-bench-$$-podman"
# podman's netavark writes iptables-nft tables; the ones it creates here are removed at the end.
tables_before=$(nft list tables)
agent_pid="" registry_pid=""

cleanup() {
  set +e
  if [ -n "$agent_pid" ]; then
    rm -f "$work/manifests/web.yaml"
    # Let the agent remove the container and its network, then stop it.
    for _ in $(seq 100); do
      curl -sf "http://127.0.0.1:$api_port/v1/containers" | grep -q '"name"' || break
      sleep 0.2
    done
    sleep 1
    kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null
  fi
  if command -v podman >/dev/null; then
    # shellcheck disable=SC2086
    podman $podman_args rm -f "$podman_name" >/dev/null 2>&1
  fi
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^$prefix"); do ip link del "$l"; done
  nft delete table inet "$prefix" 2>/dev/null
  for t in "ip nat" "ip filter"; do
    echo "$tables_before" | grep -qx "table $t" || nft delete table $t 2>/dev/null
  done
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
  # The agent keeps its (now empty) parent cgroup by design, and conmon leaves its own
  # (`<parent>/conmon`) a moment after `podman rm`: the bench made them, the bench removes them.
  for _ in $(seq 50); do
    left=""
    for d in /sys/fs/cgroup/*/"$podman_cgroup"/conmon /sys/fs/cgroup/*/"$podman_cgroup" \
      /sys/fs/cgroup/*/"berth-bench-$$"; do
      [ -d "$d" ] && { rmdir "$d" 2>/dev/null || left=1; }
    done
    [ -z "$left" ] && break
    sleep 0.2
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== registry and image"
sh tests/support/registry.sh "$work/registry" "$reg_port" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$reg_port/v2/" >/dev/null && break; sleep 0.1; done
image="127.0.0.1:$reg_port/library/busybox:1.36"
sh tests/support/busybox-image.sh "$work/image" "docker://$image" >/dev/null

# The same server in both: a 64 MiB file and a small one, busybox httpd.
serve='mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count=64 2>/dev/null && echo ok > /www/small && exec httpd -f -p 8080 -h /www'

echo "== berth (bridge prefix $prefix)"
mkdir -p "$work/manifests"
cat > "$work/agent.yaml" <<EOF
manifests: $work/manifests
stateDir: $work/state
runDir: $work/run
listen: 127.0.0.1:$api_port
cgroupParent: berth-bench-$$
registries:
  mirrors:
    docker.io: ["http://127.0.0.1:$reg_port"]
networks:
  bridgePrefix: $prefix
  pool: 10.77.0.0/20
EOF
cat > "$work/manifests/web.yaml" <<EOF
apiVersion: berth/v1
kind: Container
metadata: {name: web}
spec:
  image: docker.io/library/busybox:1.36
  command: [sh, -c, "$serve"]
  ports: [{containerPort: 8080, hostPort: $berth_port}]
  stopTimeout: 1s
EOF
BERTH_LOG=warn "$berth" agent --config "$work/agent.yaml" >"$work/agent.log" 2>&1 &
agent_pid=$!
ok=""
for _ in $(seq 300); do
  if [ "$(curl -sf "http://127.0.0.1:$berth_port/small")" = ok ]; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || { echo "berth container did not answer on 127.0.0.1:$berth_port"; cat "$work/agent.log"; exit 1; }
targets="berth=127.0.0.1:$berth_port"

echo "== podman"
if ! command -v podman >/dev/null; then
  echo "podman is not installed (apt-get install podman): measuring berth only"
else
  # shellcheck disable=SC2086
  if podman $podman_args pull -q --tls-verify=false "$image" >"$work/podman.log" 2>&1 \
    && podman $podman_args run -d --name "$podman_name" --cgroup-parent "/$podman_cgroup" -p "127.0.0.1:$podman_port:8080" \
      --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768 \
      "$image" sh -c "$serve" >>"$work/podman.log" 2>&1; then
    ok=""
    for _ in $(seq 300); do
      if [ "$(curl -sf "http://127.0.0.1:$podman_port/small")" = ok ]; then ok=1; break; fi
      sleep 0.1
    done
    if [ -n "$ok" ]; then
      targets="$targets podman=127.0.0.1:$podman_port"
    else
      echo "podman container did not answer on 127.0.0.1:$podman_port:"; cat "$work/podman.log"
    fi
  else
    echo "podman run failed:"; cat "$work/podman.log"
  fi
fi

echo "== $secs s of each measurement per engine"
# shellcheck disable=SC2086
"$netbench" --seconds "$secs" $targets
