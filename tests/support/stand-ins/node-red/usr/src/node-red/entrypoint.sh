#!/bin/sh
# Stand-in for Node-RED (see tests/support/stand-ins/README.md).
set -u
if [ ! -f /data/flows.json ]; then
  if ! echo '[]' 2>/dev/null > /data/flows.json; then
    echo "Error: EACCES: permission denied, open '/data/flows.json' (running as uid $(id -u))" >&2
    exit 1
  fi
fi
mkdir -p /tmp/editor
echo '<html><title>Node-RED</title></html>' > /tmp/editor/index.html
echo "Server now running at http://127.0.0.1:1880/"
# Pid 1 of its container: SIGTERM stops it only through a handler, as the real one has.
httpd -f -p 1880 -h /tmp/editor &
trap 'kill $!; exit 0' TERM
wait $!
