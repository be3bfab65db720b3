#!/usr/bin/env bash
# Build scripts/k8s/sdcheck (Prometheus' Kubernetes discovery and relabelling, run once; the deploy
# tier checks the collector's scrape job with it) into the cache, keyed by its sources, and print
# its path. A second run only checks that it exists.
source "$(dirname "${BASH_SOURCE[0]}")/../backends/lib.sh"

src="$REPO_ROOT/scripts/k8s/sdcheck"
key="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)"
bin="$SAGASCOPE_CACHE/tools/sdcheck-$key/sdcheck"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || die "Go is needed to build sdcheck"
  log "building sdcheck (Prometheus' Kubernetes discovery; once, cached in $(dirname "$bin"))"
  mkdir -p "$(dirname "$bin")"
  (cd "$src" && GOFLAGS=-mod=mod nice -n 10 go build -trimpath -ldflags="-s -w" -o "$bin.tmp" .) \
    || { rm -f "$bin.tmp"; die "building sdcheck failed"; }
  mv "$bin.tmp" "$bin"
fi
printf '%s\n' "$bin"
