#!/usr/bin/env bash
# Run the real observability backends as local processes (no Docker):
#   stack.sh start | stop | status | env
#
# Each one reads the SAME config file that docker compose mounts; only the
# endpoints differ, through environment variables (the collector and Jaeger
# expand ${env:VAR:-default}; Elasticsearch expands ${VAR} in its yml).
# Prometheus has no env substitution, so its compose config is rendered into
# var/stack/prometheus/ with every scrape target swapped for 127.0.0.1:<port>.
#
# Pid files and logs: var/stack/<name>.pid|.log (git-ignored).
#
#   name            listens on (127.0.0.1)                          health
#   otel-collector  OTLP gRPC 4317, OTLP HTTP 4318, metrics 8888     :13133/
#   jaeger          OTLP gRPC 4327, OTLP HTTP 4328, query/UI 16686,  :13134/status
#                   query gRPC 16685, metrics 8889
#   elasticsearch   9200                                             /_cluster/health
#   prometheus      9090                                             /-/ready
#
# The services are then started with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317
# (see `stack.sh env`), and Prometheus scrapes them on 9101/9102/9103.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HEALTH_TIMEOUT="${STACK_HEALTH_TIMEOUT:-120}"
BIND="127.0.0.1"

COLLECTOR_CONFIG="$REPO_ROOT/observability/otel-collector/otelcol-config.yml"
JAEGER_CONFIG="$REPO_ROOT/observability/jaeger/config.yaml"
PROM_CONFIG="$REPO_ROOT/observability/prometheus/prometheus.yml"
ES_CONFIG="$REPO_ROOT/observability/elk/elasticsearch.yml"

# --- local endpoints (the compose defaults live in the config files) ---------
export DEPLOYMENT_ENVIRONMENT="${DEPLOYMENT_ENVIRONMENT:-local}"
export OTELCOL_OTLP_GRPC_ENDPOINT="$BIND:4317"
export OTELCOL_OTLP_HTTP_ENDPOINT="$BIND:4318"
export OTELCOL_HEALTH_ENDPOINT="$BIND:13133"
export OTELCOL_METRICS_HOST="$BIND" OTELCOL_METRICS_PORT=8888
export JAEGER_OTLP_ENDPOINT="$BIND:4327"
export ELASTICSEARCH_ENDPOINT="http://$BIND:9200"
export JAEGER_OTLP_GRPC_ENDPOINT="$BIND:4327"
export JAEGER_OTLP_HTTP_ENDPOINT="$BIND:4328"
export JAEGER_HEALTH_ENDPOINT="$BIND:13134"
export JAEGER_METRICS_HOST="$BIND" JAEGER_METRICS_PORT=8889
export JAEGER_QUERY_HTTP_ENDPOINT="$BIND:16686"
export JAEGER_QUERY_GRPC_ENDPOINT="$BIND:16685"
export ES_NETWORK_HOST="$BIND"
PROM_LISTEN="$BIND:9090"

NAMES=(elasticsearch jaeger otel-collector prometheus)

pidfile() { printf '%s/%s.pid' "$STACK_DIR" "$1"; }
logfile() { printf '%s/%s.log' "$STACK_DIR" "$1"; }

is_running() {
  local pf; pf="$(pidfile "$1")"
  [[ -f "$pf" ]] && kill -0 "$(cat "$pf")" 2>/dev/null
}

health_url() {
  case "$1" in
    otel-collector) echo "http://$OTELCOL_HEALTH_ENDPOINT/" ;;
    jaeger)         echo "http://$JAEGER_HEALTH_ENDPOINT/status" ;;
    elasticsearch)  echo "$ELASTICSEARCH_ENDPOINT/_cluster/health?wait_for_status=yellow&timeout=1s" ;;
    prometheus)     echo "http://$PROM_LISTEN/-/ready" ;;
  esac
}

wait_healthy() { # wait_healthy NAME
  local name="$1" url deadline
  url="$(health_url "$name")"
  deadline=$((SECONDS + HEALTH_TIMEOUT))
  until curl -fsS -o /dev/null --max-time 3 "$url" 2>/dev/null; do
    if ! is_running "$name"; then
      log "$name exited; last lines of $(logfile "$name"):"
      tail -n 30 "$(logfile "$name")" >&2 || true
      return 1
    fi
    if (( SECONDS > deadline )); then
      log "$name not healthy after ${HEALTH_TIMEOUT}s at $url; last lines of $(logfile "$name"):"
      tail -n 30 "$(logfile "$name")" >&2 || true
      return 1
    fi
    sleep 1
  done
  log "$name healthy ($url)"
}

spawn() { # spawn NAME CMD... — background process, own session, pid file, log
  local name="$1"; shift
  if is_running "$name"; then log "$name already running (pid $(cat "$(pidfile "$name")"))"; return 0; fi
  setsid "$@" >>"$(logfile "$name")" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
}

render_prometheus() {
  # Keep the compose file the single source: copy it, swapping each
  # `- host:port` target for 127.0.0.1:port, and link the rule files beside it.
  local dir="$STACK_DIR/prometheus"
  mkdir -p "$dir/data"
  sed -E "s/^([[:space:]]*-[[:space:]]*)['\"]?[A-Za-z0-9_.-]+:([0-9]+)['\"]?[[:space:]]*\$/\1'$BIND:\2'/" \
    "$PROM_CONFIG" > "$dir/prometheus.yml"
  local f
  for f in "$REPO_ROOT"/observability/prometheus/*rules*.yml; do
    ln -sfn "$f" "$dir/$(basename "$f")"
  done
}

start_elasticsearch() {
  local es_home java_home dir="$STACK_DIR/elasticsearch"
  es_home="$(cat "$SAGASCOPE_CACHE/elasticsearch.home" 2>/dev/null || true)"
  [[ -x "$es_home/bin/elasticsearch" ]] || die "Elasticsearch not installed: run make backends"
  java_home="$(es_java_home)"
  if is_running elasticsearch; then log "elasticsearch already running"; return 0; fi
  mkdir -p "$dir/config" "$dir/data" "$dir/logs"
  cp "$ES_CONFIG" "$dir/config/elasticsearch.yml"
  cp "$es_home/config/jvm.options" "$es_home/config/log4j2.properties" "$dir/config/"
  mkdir -p "$dir/config/jvm.options.d"
  printf -- '-Xms%s\n-Xmx%s\n' "$ES_JAVA_HEAP" "$ES_JAVA_HEAP" > "$dir/config/jvm.options.d/heap.options"
  local -a run=()
  if [[ "$(id -u)" -eq 0 ]]; then
    id "$ES_USER" >/dev/null 2>&1 || die "user $ES_USER missing: run make backends"
    chown -R "$ES_USER:" "$dir"
    run=(runuser -u "$ES_USER" --)
  fi
  rm -f "$dir/es.pid"
  # `-p` makes Elasticsearch write its own pid; the runuser wrapper's pid is
  # replaced by it below so `stop` signals the JVM itself.
  setsid "${run[@]}" env ES_JAVA_HOME="$java_home" ES_PATH_CONF="$dir/config" \
      ES_NETWORK_HOST="$ES_NETWORK_HOST" \
      "$es_home/bin/elasticsearch" -p "$dir/es.pid" \
      -E path.data="$dir/data" -E path.logs="$dir/logs" \
      >>"$(logfile elasticsearch)" 2>&1 < /dev/null &
  echo $! > "$(pidfile elasticsearch)"
  local i
  for i in $(seq 1 60); do [[ -s "$dir/es.pid" ]] && break; is_running elasticsearch || break; sleep 0.5; done
  [[ -s "$dir/es.pid" ]] && cp "$dir/es.pid" "$(pidfile elasticsearch)"
}

start() {
  mkdir -p "$STACK_DIR"
  [[ -x "$OTELCOL_BIN" ]] || die "collector not built: run make backends"
  [[ -x "$JAEGER_BIN" ]] || die "jaeger not built: run make backends"
  command -v prometheus >/dev/null || die "prometheus not installed: run make backends"

  start_elasticsearch
  spawn jaeger "$JAEGER_BIN" --config "$JAEGER_CONFIG"
  render_prometheus
  spawn prometheus prometheus --config.file="$STACK_DIR/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STACK_DIR/prometheus/data" --storage.tsdb.retention.time=1d \
    --web.listen-address="$PROM_LISTEN" --web.enable-lifecycle \
    --enable-feature=exemplar-storage
  # The collector last: its exporters expect Jaeger and Elasticsearch up
  # (they retry anyway, but the first records then go straight through).
  wait_healthy jaeger
  wait_healthy elasticsearch
  spawn otel-collector "$OTELCOL_BIN" --config "$COLLECTOR_CONFIG"
  wait_healthy otel-collector
  wait_healthy prometheus
  elk_setup
  status
}

elk_setup() {
  # Index template + ILM policy through the same setup job compose runs.
  # There is no Kibana locally: the job skips the saved-objects import.
  local py="$SAGASCOPE_CACHE/elk-venv/bin/python"
  [[ -x "$py" ]] || die "elk setup venv missing: run make backends"
  ELASTICSEARCH_URL="$ELASTICSEARCH_ENDPOINT" KIBANA_URL="" \
    "$py" "$REPO_ROOT/observability/elk/setup.py" >>"$(logfile elk-setup)" 2>&1 \
    || { tail -n 20 "$(logfile elk-setup)" >&2; die "elk setup failed"; }
  log "elk setup done ($(tail -n 1 "$(logfile elk-setup)"))"
}

# The pid of this stack's NAME process when its pid file is gone (e.g. `make
# clean` removed var/ while it ran): matched on this checkout's exact paths
# in the command line, never on a program name alone.
orphan_pid() {
  local needle
  case "$1" in
    otel-collector) needle="$OTELCOL_BIN --config $COLLECTOR_CONFIG" ;;
    jaeger)         needle="$JAEGER_BIN --config $JAEGER_CONFIG" ;;
    prometheus)     needle="--config.file=$STACK_DIR/prometheus/prometheus.yml" ;;
    elasticsearch)  needle="org.elasticsearch.bootstrap.Elasticsearch" ;;
  esac
  local dir cmd
  for dir in /proc/[0-9]*; do
    cmd="$(tr '\0' ' ' < "$dir/cmdline" 2>/dev/null)" || continue
    [[ "$cmd" == *"$needle"* ]] || continue
    # the Elasticsearch server JVM: ours is the one whose ES_PATH_CONF is this stack's
    if [[ "$1" == elasticsearch ]] && ! tr '\0' '\n' < "$dir/environ" 2>/dev/null \
        | grep -qxF "ES_PATH_CONF=$STACK_DIR/elasticsearch/config"; then
      continue
    fi
    echo "${dir#/proc/}"; return 0
  done
  return 1
}

stop() {
  local name pid i
  for name in otel-collector prometheus jaeger elasticsearch; do
    if ! is_running "$name" && pid="$(orphan_pid "$name")"; then
      log "$name has no pid file; found its process $pid by command line"
      mkdir -p "$STACK_DIR" && echo "$pid" > "$(pidfile "$name")"
    fi
    if is_running "$name"; then
      pid="$(cat "$(pidfile "$name")")"
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then log "$name (pid $pid) ignored TERM; KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
      log "$name stopped"
    fi
    rm -f "$(pidfile "$name")"
  done
}

status() {
  local name state rc=0
  for name in "${NAMES[@]}"; do
    if is_running "$name"; then state="running pid $(cat "$(pidfile "$name")")"; else state="stopped"; rc=1; fi
    printf '  %-15s %-20s log %s\n' "$name" "$state" "$(logfile "$name")"
  done
  cat <<EOF
  endpoints:
    OTLP (services export here)  grpc http://$OTELCOL_OTLP_GRPC_ENDPOINT  http http://$OTELCOL_OTLP_HTTP_ENDPOINT
    collector health / metrics   http://$OTELCOL_HEALTH_ENDPOINT/  http://$OTELCOL_METRICS_HOST:$OTELCOL_METRICS_PORT/metrics
    Jaeger UI + query API        http://$JAEGER_QUERY_HTTP_ENDPOINT/  (OTLP in on $JAEGER_OTLP_GRPC_ENDPOINT)
    Elasticsearch                $ELASTICSEARCH_ENDPOINT/
    Prometheus                   http://$PROM_LISTEN/
EOF
  return $rc
}

service_env() {
  # What the three services need to report to this stack.
  cat <<EOF
OTEL_EXPORTER_OTLP_ENDPOINT=http://$OTELCOL_OTLP_GRPC_ENDPOINT
OTEL_EXPORTER_OTLP_PROTOCOL=grpc
OTEL_TRACES_EXPORTER=otlp
OTEL_LOGS_EXPORTER=otlp
OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=$DEPLOYMENT_ENVIRONMENT
EOF
}

case "${1:-}" in
  start)  start ;;
  stop)   stop ;;
  status) status ;;
  env)    service_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
