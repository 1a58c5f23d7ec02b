#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this host, separate from the broker on 5672: nodes rabbit-a/b/c
# on AMQP ports 5701-5703, state under ${CLUSTER_DIR:-/tmp/observers-rabbitmq}. For the scale-out run
# against quorum queues (README, "Scale-out").
# Usage: rabbitmq-local-cluster.sh start|stop|status|stop-node X|start-node X (X: a, b or c)
set -euo pipefail
DIR="${CLUSTER_DIR:-/tmp/observers-rabbitmq}"
NODES=(a b c)
RABBIT=/usr/lib/rabbitmq/bin
export HOME="$DIR/home"  # one Erlang cookie for the nodes and rabbitmqctl

node_env() {  # $1: node letter, $2: its number (1-3)
  local node="$1" n="$2" base="$DIR/$1"
  mkdir -p "$base/mnesia" "$base/log" "$HOME"
  echo "[]." >"$base/enabled_plugins"
  echo "listeners.tcp.default = 127.0.0.1:$((5700 + n))" >"$base/rabbitmq.conf"
  cat >"$base/env.conf" <<EOF
NODENAME=rabbit-$node@localhost
NODE_PORT=$((5700 + n))
DIST_PORT=$((25700 + n))
CONFIG_FILE=$base/rabbitmq.conf
MNESIA_BASE=$base/mnesia
LOG_BASE=$base/log
ENABLED_PLUGINS_FILE=$base/enabled_plugins
PID_FILE=$base/pid
ERL_EPMD_ADDRESS=127.0.0.1
EOF
  echo "$base/env.conf"
}

ctl() {  # $1: node letter, then rabbitmqctl's arguments
  local node="$1"
  shift
  RABBITMQ_CONF_ENV_FILE="$DIR/$node/env.conf" "$RABBIT/rabbitmqctl" -n "rabbit-$node@localhost" "$@"
}

case "${1:-}" in
  start)
    n=0
    for node in "${NODES[@]}"; do
      n=$((n + 1))
      RABBITMQ_CONF_ENV_FILE="$(node_env "$node" "$n")" "$RABBIT/rabbitmq-server" -detached
    done
    for node in "${NODES[@]}"; do  # a node is unknown to epmd for its first seconds
      for _ in $(seq 60); do
        ctl "$node" await_startup --timeout 10 >/dev/null 2>&1 && break
        sleep 2
      done
      ctl "$node" await_startup --timeout 10
    done
    for node in b c; do
      ctl "$node" stop_app
      ctl "$node" join_cluster rabbit-a@localhost
      ctl "$node" start_app
    done
    ctl a cluster_status
    ;;
  stop)
    for node in "${NODES[@]}"; do
      ctl "$node" shutdown || true
    done
    rm -rf "$DIR"
    ;;
  status)
    ctl a cluster_status
    ;;
  stop-node)  # the node's broker goes away (its Erlang VM stays, for start-node)
    ctl "${2:?which node: a, b or c}" stop_app
    ;;
  start-node)
    ctl "${2:?which node: a, b or c}" start_app
    ;;
  *)
    echo "usage: $0 start|stop|status|stop-node X|start-node X" >&2
    exit 2
    ;;
esac
