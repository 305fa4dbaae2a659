#!/bin/sh
# Starts a KRaft controller or broker: kafka-server-start.sh SERVER_PROPERTIES. As in Kafka's
# distribution, the heap defaults to 1 GiB (set KAFKA_HEAP_OPTS to change it) and the server
# logs through its own log4j2 configuration (the image's logs INFO to the console).
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 server.properties [--override property=value]..." >&2
    exit 2
fi
: "${KAFKA_HEAP_OPTS:=-Xmx1G -Xms1G}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$(cd "$(dirname "$0")/.." && pwd)/config/log4j2.properties}"
export KAFKA_HEAP_OPTS KAFKA_LOG4J_OPTS
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
