#!/usr/bin/env bash
# `validate` the collector config with the locally built collector: the base alone and with
# every profile overlay (observability/otel-collector/profiles/*.yml) — each alone, all together,
# and production+filelog — once with the compose endpoints (the files' defaults) and once with
# the local ones. The local endpoints come from the one topology (sagascope.local.topology).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DIR="$REPO_ROOT/observability/otel-collector"
BASE="$DIR/otelcol-config.yml"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$OTELCOL_BIN" ]] || die "collector not built: run make backends"
mapfile -t local_env < <(cd "$REPO_ROOT" && "$PYTHON" -m sagascope.local.topology)
(( ${#local_env[@]} )) || die "no local topology from $PYTHON -m sagascope.local.topology (make install)"

combinations=("" production filelog k8s "production filelog" "production filelog k8s")
# profiles/postgresql.yml: only where the build has the postgresql receiver (the module proxy here
# cannot build it: docs/databases.md); it needs its login's password (the receiver refuses an
# empty one), and validate never connects, so any value does.
if "$OTELCOL_BIN" components | grep -q '^ *- name: postgresql$'; then
  combinations+=(postgresql "production filelog k8s postgresql")
  export POSTGRESQL_MONITOR_PASSWORD="${POSTGRESQL_MONITOR_PASSWORD:-validate-only}"
else
  log "skipped: profiles/postgresql.yml (this collector has no postgresql receiver)"
fi
for combo in "${combinations[@]}"; do
  args=(--config "$BASE")
  for profile in $combo; do
    [[ -f "$DIR/profiles/$profile.yml" ]] || die "missing profile $DIR/profiles/$profile.yml"
    args+=(--config "$DIR/profiles/$profile.yml")
  done
  env -u JAEGER_OTLP_ENDPOINT -u ELASTICSEARCH_ENDPOINT -u PROMETHEUS_REMOTE_WRITE_URL \
    "$OTELCOL_BIN" validate "${args[@]}" || die "invalid: base ${combo:++ $combo} (compose endpoints)"
  env "${local_env[@]}" "$OTELCOL_BIN" validate "${args[@]}" || die "invalid: base ${combo:++ $combo} (local endpoints)"
  log "valid: base${combo:+ + ${combo// / + }}"
done
# The node agent (deploy/k8s/base/otel-agent.yaml): the file_log profile alone, then agent.yml,
# with the DaemonSet's environment.
OTELCOL_GATEWAY_ENDPOINT=otel-collector.sagascope:4317 FILELOG_INCLUDE='/var/log/pods/*/*/*.log' \
  "$OTELCOL_BIN" validate --config "$DIR/profiles/filelog.yml" --config "$DIR/agent.yml" \
  || die "invalid: the node agent (profiles/filelog.yml + agent.yml)"
log "valid: the node agent (profiles/filelog.yml + agent.yml)"
log "collector $OTELCOL_VERSION ($OTELCOL_BIN): every profile combination is valid"
