#!/usr/bin/env bash
# Where `make backends` put each backend, as KEY=VALUE lines. Read by
# sagascope.local.backends, so lib.sh stays the one place that knows the
# cache layout and the pinned versions. Prints; starts nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
printf 'OTELCOL_BIN=%s\n' "$OTELCOL_BIN"
printf 'JAEGER_BIN=%s\n' "$JAEGER_BIN"
printf 'ES_HOME=%s\n' "$(cat "$SAGASCOPE_CACHE/elasticsearch.home" 2>/dev/null || true)"
printf 'ES_JAVA_HOME=%s\n' "$( (es_java_home) 2>/dev/null || true)"
printf 'ES_JAVA_HEAP=%s\n' "$ES_JAVA_HEAP"
printf 'ES_USER=%s\n' "$ES_USER"
printf 'ELK_SETUP_PYTHON=%s\n' "$SAGASCOPE_CACHE/elk-venv/bin/python"
printf 'STACK_DIR=%s\n' "$STACK_DIR"
