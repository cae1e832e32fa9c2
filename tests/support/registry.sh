#!/bin/sh
# Start Debian's docker-registry on a loopback port with its own storage dir.
# usage: registry.sh DIR PORT   -> runs in the foreground; the caller backgrounds it.
set -eu
dir=$1 port=$2
mkdir -p "$dir/storage"
cat > "$dir/config.yml" <<CFG
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CFG
exec docker-registry serve "$dir/config.yml"
