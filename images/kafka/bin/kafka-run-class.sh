#!/bin/sh
# Runs a class of Apache Kafka with the image's classpath: the part of the distribution's
# bin/kafka-run-class.sh that the Shanraq pods use (Maven Central has the jars, not the
# scripts). The same variables, with the same defaults:
#   KAFKA_HEAP_OPTS             -Xmx256M
#   KAFKA_JVM_PERFORMANCE_OPTS  G1 with Kafka's pause settings
#   KAFKA_LOG4J_OPTS            the image's tools log4j2 configuration (warnings, on the console)
#   KAFKA_OPTS                  anything else (the pods' -javaagent)
#   LOG_DIR                     kafka.logs.dir for a log4j configuration that writes files
# Usage: kafka-run-class.sh CLASS [ARGS...]
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 CLASS [ARGS...]" >&2
    exit 2
fi
base_dir=$(cd "$(dirname "$0")/.." && pwd)
class=$1
shift
: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.properties}"
: "${LOG_DIR:=$base_dir/logs}"
# The option variables hold several words each: split them, as Kafka's own script does.
# shellcheck disable=SC2086
exec java $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $KAFKA_LOG4J_OPTS \
    "-Dkafka.logs.dir=$LOG_DIR" -cp "$base_dir/libs/*" ${KAFKA_OPTS:-} "$class" "$@"
