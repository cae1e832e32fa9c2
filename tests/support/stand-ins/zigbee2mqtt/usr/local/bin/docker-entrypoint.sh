#!/bin/sh
# Stand-in for Zigbee2MQTT's entrypoint: the real one's first-start config copy.
set -e
DATA=${ZIGBEE2MQTT_DATA:-/app/data}
echo "Using '$DATA' as data directory"
if [ ! -f "$DATA/configuration.yaml" ]; then
  echo "Creating configuration file..."
  cp /app/configuration.example.yaml "$DATA/configuration.yaml"
fi
exec "$@"
