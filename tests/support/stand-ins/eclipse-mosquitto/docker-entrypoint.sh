#!/bin/sh
# Stand-in for eclipse-mosquitto's entrypoint: hands /mosquitto to the mosquitto user when
# started as root, as the real one does, and runs the command.
set -e
if [ "$(id -u)" = 0 ]; then
  [ -d /mosquitto ] && chown -R mosquitto:mosquitto /mosquitto 2>/dev/null || true
fi
exec "$@"
