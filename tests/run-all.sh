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
# OpenSSH's sshd and ssh client).
packages="docker-registry umoci skopeo busybox-static nftables iproute2 python3-jsonschema python3-yaml coreutils podman runc util-linux apache2-utils openssl systemd git lighttpd lighttpd-mod-openssl openssh-server openssh-client"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

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
