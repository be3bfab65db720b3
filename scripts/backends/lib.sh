# shellcheck shell=bash
# Shared helpers for scripts/backends/*.sh — sourced, never run.
#
# Caches live OUTSIDE the repository so that a fresh clone (CI clones into
# another folder on the same machine) reuses what an earlier run built:
#   ${SAGASCOPE_CACHE:-$HOME/.cache/sagascope}   built binaries, unpacked Elasticsearch
#   the Go module / build cache (go env GOMODCACHE, GOCACHE) and ~/.m2 as usual.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SAGASCOPE_CACHE="${SAGASCOPE_CACHE:-$HOME/.cache/sagascope}"
STACK_DIR="${SAGASCOPE_STACK_DIR:-$REPO_ROOT/var/stack}"
export REPO_ROOT SAGASCOPE_CACHE STACK_DIR

# Versions come from the one .env that also pins the compose images.
_env_value() { # _env_value KEY -> value from $REPO_ROOT/.env (environment wins)
  local key="$1" val
  val="${!key:-}"
  if [[ -z "$val" ]]; then
    val="$(sed -n "s/^${key}=//p" "$REPO_ROOT/.env" | tail -n1)"
  fi
  [[ -n "$val" ]] || { echo "error: $key is not set in $REPO_ROOT/.env" >&2; return 1; }
  printf '%s' "$val"
}

OTELCOL_VERSION="$(_env_value OTELCOL_VERSION)"
JAEGER_GO_MODULE_VERSION="$(_env_value JAEGER_GO_MODULE_VERSION)"
ELASTIC_VERSION="$(_env_value ELASTIC_VERSION)"
ES_JAVA_HEAP="$(_env_value ES_JAVA_HEAP)"

# The collector is cached by the builder manifest's fingerprint: a changed component list builds
# (and is found at) a new path, and worktrees on different manifests never swap binaries.
# Comments and blank lines do not count.
OTELCOL_MANIFEST="$REPO_ROOT/observability/otel-collector/builder-config.yaml"
OTELCOL_BIN="$SAGASCOPE_CACHE/otelcol-sagascope-$OTELCOL_VERSION-$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$OTELCOL_MANIFEST" | sha256sum | cut -c1-16)/otelcol-sagascope"
JAEGER_BIN="$SAGASCOPE_CACHE/jaeger-$JAEGER_GO_MODULE_VERSION/jaeger"
ES_HOME="$SAGASCOPE_CACHE/elasticsearch-$ELASTIC_VERSION"
ES_USER="${SAGASCOPE_ES_USER:-sagascope-es}"
export OTELCOL_VERSION JAEGER_GO_MODULE_VERSION ELASTIC_VERSION ES_JAVA_HEAP
export OTELCOL_MANIFEST OTELCOL_BIN JAEGER_BIN ES_HOME ES_USER

# LOG_TAG names the script family in messages (scripts/k8s/build_images.sh sets its own).
log() { printf '[%s] %s\n' "${LOG_TAG:-backends}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${LOG_TAG:-backends}" "$*" >&2; exit 1; }

# sha256 of the given files, used as build stamps: a changed manifest rebuilds.
fingerprint() { cat "$@" | sha256sum | cut -c1-16; }

# Java for Elasticsearch: the integ-test zip bundles no JDK. ES 8.x runs on
# 17+; prefer a JDK >= 21 when the ES major needs it (9.x).
es_java_home() {
  if [[ -n "${ES_JAVA_HOME:-}" ]]; then printf '%s' "$ES_JAVA_HOME"; return; fi
  local major="${ELASTIC_VERSION%%.*}" cand
  local -a cands
  if (( major >= 9 )); then
    cands=(/usr/lib/jvm/temurin-25-jdk-* /usr/lib/jvm/*-25-* /usr/lib/jvm/*-21-* /opt/*jdk*25*)
  else
    cands=(/usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/java-21-openjdk-* /usr/lib/jvm/temurin-25-jdk-*)
  fi
  for cand in "${cands[@]}"; do
    if [[ -x "$cand/bin/java" ]]; then printf '%s' "$cand"; return; fi
  done
  die "no JDK found for Elasticsearch $ELASTIC_VERSION; set ES_JAVA_HOME"
}
