#!/usr/bin/env bash
# `validate` the collector config with the locally built collector, once with
# the compose endpoints (the file's defaults) and once with the local ones.
# The local endpoints come from the one topology (sagascope.local.topology).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONFIG="$REPO_ROOT/observability/otel-collector/otelcol-config.yml"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$OTELCOL_BIN" ]] || die "collector not built: run make backends"
env -u JAEGER_OTLP_ENDPOINT -u ELASTICSEARCH_ENDPOINT "$OTELCOL_BIN" validate --config "$CONFIG"
mapfile -t local_env < <(cd "$REPO_ROOT" && "$PYTHON" -m sagascope.local.topology)
(( ${#local_env[@]} )) || die "no local topology from $PYTHON -m sagascope.local.topology (make install)"
env "${local_env[@]}" "$OTELCOL_BIN" validate --config "$CONFIG"
log "collector $OTELCOL_VERSION: $CONFIG is valid"
