#!/usr/bin/env bash
# The upstream Elasticsearch image's start-up, for the stand-in built from the integ-test zip:
# `eswrapper` (the default command) runs bin/elasticsearch with every environment variable that
# looks like a setting (lower case with dots: node.store.allow_mmap) or ES_SETTING_<NAME> (_ for
# ., __ for _) passed as -E, and creates the keystore when missing. ES_JAVA_OPTS and anything the
# config file references (${ES_NETWORK_HOST}) are read by Elasticsearch itself.
#
# The zip carries only some modules: a setting that merely turns off a module it lacks
# (xpack.ml.enabled=false) would be refused as unknown, so it is dropped with a note.
set -Eeuo pipefail

if [[ "${1:-}" != eswrapper ]]; then exec "$@"; fi
shift

declare -A absent_module_of=( [xpack.ml.]=x-pack-ml [ingest.geoip.]=ingest-geoip )
settings=()
while IFS= read -r -d '' kv; do
  name="${kv%%=*}" value="${kv#*=}"
  if [[ "$name" =~ ^ES_SETTING_([A-Z0-9_]+)$ ]]; then
    name="${BASH_REMATCH[1],,}" name="${name//__/@}" name="${name//_/.}" name="${name//@/_}"
  elif [[ ! "$name" =~ ^[a-z0-9_]+(\.[a-z0-9_]+)+$ ]]; then
    continue
  fi
  for prefix in "${!absent_module_of[@]}"; do
    module="${absent_module_of[$prefix]}"
    if [[ "$name" == "$prefix"* && "$value" == false && ! -d "$ES_HOME/modules/$module" ]]; then
      echo "docker-entrypoint: $name=false skipped: this distribution has no $module module" >&2
      continue 2
    fi
  done
  settings+=("-E" "$name=$value")
done < <(env -0)

if [[ ! -f "$ES_HOME/config/elasticsearch.keystore" ]]; then
  elasticsearch-keystore create
fi
exec elasticsearch "${settings[@]}" "$@"
