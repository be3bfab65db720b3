#!/usr/bin/env bash
# `validate` the collector config with the locally built collector, once with
# the compose endpoints (the file's defaults) and once with the local ones.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONFIG="$REPO_ROOT/observability/otel-collector/otelcol-config.yml"
[[ -x "$OTELCOL_BIN" ]] || die "collector not built: run make backends"
env -u JAEGER_OTLP_ENDPOINT -u ELASTICSEARCH_ENDPOINT "$OTELCOL_BIN" validate --config "$CONFIG"
JAEGER_OTLP_ENDPOINT=127.0.0.1:4327 ELASTICSEARCH_ENDPOINT=http://127.0.0.1:9200 \
  "$OTELCOL_BIN" validate --config "$CONFIG"
log "collector $OTELCOL_VERSION: $CONFIG is valid"
