#!/bin/sh
# RabbitMQ for the bookstore, as a service of the stack: a node of its own (its own epmd,
# node name and ports), its files under $DATA_DIR/rabbitmq, user guest/guest on loopback.
# epmd runs in the foreground beside it, in the same process group, so that stopping the
# service stops both (no daemon outlives the stack).
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/${DATA_DIR:-.state}/rabbitmq"
case "${DATA_DIR:-.state}" in /*) dir="$DATA_DIR/rabbitmq" ;; esac
mkdir -p "$dir"
# warnings and errors only in the service's log (shoal logs rabbitmq)
printf 'listeners.tcp.default = 127.0.0.1:%s\nlog.console.level = warning\n' "$AMQP_PORT" >"$dir/rabbitmq.conf"
echo '[].' >"$dir/enabled_plugins"
: >"$dir/rabbitmq-env.conf"
epmd -port "$EPMD_PORT" -address 127.0.0.1 &
server=/usr/lib/rabbitmq/bin/rabbitmq-server      # Debian's, without the switch to user rabbitmq
[ -x "$server" ] || server=rabbitmq-server
export HOME="$dir" ERL_EPMD_PORT="$EPMD_PORT" \
  RABBITMQ_NODENAME="bookstore$AMQP_PORT@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$DIST_PORT" \
  RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
  RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" RABBITMQ_LOGS=- \
  RUNNING_UNDER_SYSTEMD=true
exec "$server"
