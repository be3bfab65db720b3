#!/usr/bin/env bash
# Build the sagascope OpenTelemetry Collector with the collector builder (ocb)
# from observability/otel-collector/builder-config.yaml.
#
# The binary is cached under $SAGASCOPE_CACHE keyed by release AND the
# manifest's fingerprint (OTELCOL_BIN in lib.sh), so editing the manifest
# rebuilds into a new directory that sagascope.local.backends then finds, and
# nothing else rebuilds. ocb itself is `go install`ed at the core release the
# manifest names.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MANIFEST="$OTELCOL_MANIFEST"
[[ -f "$MANIFEST" ]] || die "missing $MANIFEST"

# One matched release: the manifest's dist.version must be the .env release.
manifest_version="$(sed -n 's/^  version: *//p' "$MANIFEST" | head -n1)"
[[ "$manifest_version" == "$OTELCOL_VERSION" ]] \
  || die "builder-config.yaml dist.version ($manifest_version) != OTELCOL_VERSION in .env ($OTELCOL_VERSION)"
# A line may name another release only when it says why ("# proxy-gap: ..."): the module proxy
# reachable here lacks that module at the release.
if grep -E 'gomod: .* v0\.' "$MANIFEST" | grep -v " v$OTELCOL_VERSION\$" | grep -v ' # proxy-gap: ' >&2; then
  die "every v0.x component in $MANIFEST must be v$OTELCOL_VERSION (lines above)"
fi

OUT_DIR="$(dirname "$OTELCOL_BIN")"
if [[ -x "$OTELCOL_BIN" ]]; then
  log "collector $OTELCOL_VERSION cached: $OTELCOL_BIN"
  exit 0
fi
command -v go >/dev/null || die "go not found"

OCB="$SAGASCOPE_CACHE/ocb-v$OTELCOL_VERSION/builder"
if [[ ! -x "$OCB" ]]; then
  log "installing ocb v$OTELCOL_VERSION"
  GOBIN="$(dirname "$OCB")" go install "go.opentelemetry.io/collector/cmd/builder@v$OTELCOL_VERSION"
fi

WORK="$SAGASCOPE_CACHE/build/$(basename "$OUT_DIR")"
mkdir -p "$WORK" "$OUT_DIR"
# ocb resolves output_path relative to the working directory.
cp "$MANIFEST" "$WORK/builder-config.yaml"
log "building collector $OTELCOL_VERSION with ocb (a few minutes on 2 cores; nice'd)"
start=$SECONDS
# The checksum database reachable here has no entry for the weekly-tagged
# go.opentelemetry.io/ebpf-profiler versions that elasticsearchexporter
# requires (the lookup answers 404), so `go mod tidy` cannot verify them there.
# Skip the checksum database for that one module only, then hold the hashes
# go recorded against the ones the elasticsearchexporter release itself
# pins in its go.sum (below) — the same guarantee, from the upstream release.
( cd "$WORK" && GONOSUMDB="go.opentelemetry.io/ebpf-profiler${GONOSUMDB:+,$GONOSUMDB}" \
    nice -n 10 "$OCB" --config builder-config.yaml --ldflags="-s -w" )
es_mod_dir="$(cd "$WORK/build" && go list -m -f '{{.Dir}}' github.com/open-telemetry/opentelemetry-collector-contrib/exporter/elasticsearchexporter)"
while read -r mod ver sum; do
  want="$(awk -v m="$mod" -v v="$ver" '$1==m && $2==v {print $3}' "$es_mod_dir/go.sum")"
  [[ -n "$want" ]] || die "no upstream go.sum entry for $mod $ver to check against"
  [[ "$want" == "$sum" ]] || die "checksum mismatch for $mod $ver: got $sum, upstream go.sum has $want"
done < <(grep '^go.opentelemetry.io/ebpf-profiler ' "$WORK/build/go.sum")
log "ebpf-profiler checksums match elasticsearchexporter's go.sum"
# Install under a temporary name, then rename: a half-copied binary is never found.
install -m 0755 "$WORK/build/otelcol-sagascope" "$OTELCOL_BIN.tmp" && mv -f "$OTELCOL_BIN.tmp" "$OTELCOL_BIN"
log "collector built in $((SECONDS - start))s: $OTELCOL_BIN"
"$OTELCOL_BIN" components >/dev/null && log "components: $("$OTELCOL_BIN" --version)"
