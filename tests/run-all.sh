#!/bin/sh
# Runs every check and test of berth, installing what the tests need on a fresh Debian 12.
# Must run as root: the tests create namespaces, cgroups and mounts (each under a unique
# prefix, all removed at the end).
set -eu
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "run-all.sh: the tests need root (namespaces, cgroups, mounts)" >&2; exit 1; }

# Debian packages the tests use: a real OCI registry, real image tools, busybox for images,
# podman and runc for the isolation probe's reference container, htpasswd (bcrypt) and openssl
# for the registries behind basic and token auth, systemd-analyze to verify the unit file,
# git servers for the git source (git daemon and http-backend from git, lighttpd with TLS,
# OpenSSH's sshd and ssh client), python3-venv for kubernetes-validate's venv (the chart
# tests).
packages="docker-registry umoci skopeo busybox-static nftables iproute2 python3-jsonschema python3-yaml coreutils podman runc util-linux apache2-utils openssl systemd git lighttpd lighttpd-mod-openssl openssh-server openssh-client python3-venv"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

# The chart and monitoring checks (tests/tests/chart.rs) run helm, promtool and
# kubernetes-validate from $tools/bin, each installed once at a pinned version:
# - helm v3.22.0 built from the Go module proxy (about 2 minutes on 2 cores with an empty Go
#   cache);
# - promtool 2.42 unpacked from Debian's prometheus package, not installed: installing it
#   would start a Prometheus server on :9090;
# - kubernetes-validate 1.31.0 from PyPI, in a venv of Debian's python3.
tools=/var/cache/berth-tests
mkdir -p "$tools/bin"
if ! go version -m "$tools/bin/helm" 2>/dev/null | grep -q 'helm.sh/helm/v3[[:space:]]*v3\.22\.0[[:space:]]'; then
  command -v go >/dev/null 2>&1 || { echo "run-all.sh: go is needed to build helm (the Go toolchain, in PATH)" >&2; exit 1; }
  echo "building helm v3.22.0 into $tools/bin"
  GOBIN="$tools/bin" go install helm.sh/helm/v3/cmd/helm@v3.22.0
fi
if ! "$tools/bin/promtool" --version 2>/dev/null | grep -q '^promtool, version 2\.42\.'; then
  echo "unpacking promtool from Debian's prometheus package into $tools/bin"
  deb=$(mktemp -d)
  # apt's download sandbox user must be able to write there.
  chmod 755 "$deb"
  chown _apt "$deb" 2>/dev/null || true
  (cd "$deb" && apt-get download -qq prometheus) || { apt-get update -qq && (cd "$deb" && apt-get download -qq prometheus); }
  dpkg-deb --fsys-tarfile "$deb"/prometheus_*.deb | tar -x -C "$deb" ./usr/bin/promtool
  install -m 755 "$deb/usr/bin/promtool" "$tools/bin/promtool"
  rm -rf "$deb"
fi
if [ "$("$tools/venv/bin/kubernetes-validate" --version 2>/dev/null)" != 1.31.0 ]; then
  echo "installing kubernetes-validate 1.31.0 into $tools/venv"
  rm -rf "$tools/venv"
  /usr/bin/python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q kubernetes-validate==1.31.0
fi
ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
export PATH="$tools/bin:$PATH"

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests drive the real binary, and install the Debian package.
cargo build -p berth
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb --version 3.8.0
cargo deb -p berth
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-fail-fast: a failing test binary must not hide the results of the ones after it.
{ cargo test --workspace --no-fail-fast 2>&1; echo "cargo test exit status: $?"; } | tee "$log"
status=0
grep -q '^cargo test exit status: 0$' "$log" || status=1
# One closing line for the whole run (cargo prints one per test binary, the last often a
# doc-test binary with nothing in it).
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
grep -q '^test result: FAILED' "$log" && status=1
exit $status
