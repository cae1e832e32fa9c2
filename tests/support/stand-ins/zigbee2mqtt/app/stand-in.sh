#!/bin/sh
# Stand-in for Zigbee2MQTT (see tests/support/stand-ins/README.md).
set -u
adapter=${ZIGBEE2MQTT_CONFIG_SERIAL_PORT:-}
if [ ! -c "$adapter" ]; then
  echo "Error: adapter '$adapter' is not a character device" >&2
  exit 1
fi
# Kept open for as long as it runs, as the real one keeps its serial port.
if ! exec 3<>"$adapter"; then
  echo "Error: cannot open adapter $adapter" >&2
  exit 1
fi
echo "Zigbee adapter $adapter open"
server=${ZIGBEE2MQTT_CONFIG_MQTT_SERVER:-mqtt://localhost}
address=${server#mqtt://}
host=${address%:*}
port=${address##*:}
[ "$port" != "$address" ] || port=1883
if ! echo 'zigbee2mqtt/bridge/state {"state":"online"}' | nc -w 5 "$host" "$port"; then
  echo "MQTT failed to connect, exiting... ($server)" >&2
  exit 1
fi
echo "Connected to MQTT server $server"
mkdir -p /tmp/frontend
echo '<html><title>Zigbee2MQTT</title></html>' > /tmp/frontend/index.html
echo "Started frontend on port ${ZIGBEE2MQTT_CONFIG_FRONTEND_PORT:-8080}"
# Pid 1 of its container: SIGTERM stops it only through a handler, as the real one has.
httpd -f -p "${ZIGBEE2MQTT_CONFIG_FRONTEND_PORT:-8080}" -h /tmp/frontend &
trap 'kill $!; exit 0' TERM
wait $!
