#!/usr/bin/env bash
# Build Jaeger v2 (the all-in-one `jaeger` binary) for `make stack`.
#
# `go install github.com/jaegertracing/jaeger/cmd/jaeger@<tag>` is refused by
# the go command because Jaeger's go.mod carries a `replace` directive
# ("must not contain directives that would cause it to be interpreted
# differently than if it were the main module"). So: fetch the module through
# the Go module proxy (go mod download), copy it out of the read-only module
# cache and `go build ./cmd/jaeger` there — same source, same tag, and the
# build honours the replace. Cached by version under $SAGASCOPE_CACHE.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOD="github.com/jaegertracing/jaeger"
V="$JAEGER_GO_MODULE_VERSION"

if [[ -x "$JAEGER_BIN" ]]; then
  log "jaeger $V cached: $JAEGER_BIN"
  exit 0
fi
command -v go >/dev/null || die "go not found"

SRC="$SAGASCOPE_CACHE/src/jaeger-$V"
if [[ ! -f "$SRC/go.mod" ]]; then
  log "downloading $MOD@$V"
  dir="$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$MOD@$V" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || die "go mod download $MOD@$V gave no directory"
  mkdir -p "$(dirname "$SRC")"
  rm -rf "$SRC.tmp" && cp -r "$dir" "$SRC.tmp" && chmod -R u+w "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi

log "building jaeger $V (several minutes on 2 cores; nice'd)"
start=$SECONDS
mkdir -p "$(dirname "$JAEGER_BIN")"
( cd "$SRC" && nice -n 10 go build -trimpath -ldflags="-s -w" -o "$JAEGER_BIN.tmp" ./cmd/jaeger )
mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
log "jaeger $V built in $((SECONDS - start))s: $JAEGER_BIN"
