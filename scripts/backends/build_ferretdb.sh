#!/usr/bin/env bash
# Build FerretDB (v1, github.com/FerretDB/FerretDB) once into the cache outside the clone; prints the
# binary's path. Not a plain `go_tool.sh` (`go install module@version`): FerretDB embeds
# build/version/version.txt, which its module zip leaves empty, and a binary built without it panics
# at start ("Invalid build/version/version.txt"). So: the module's source from the Go module proxy,
# copied, version.txt written, then `go build` there (same module graph and go.sum).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version="$(_env_value FERRETDB_VERSION)"
module=github.com/FerretDB/FerretDB
dir="$SAGASCOPE_CACHE/tools/ferretdb-$version"
bin="$dir/ferretdb"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || die "Go is needed to build FerretDB $version"
  log "building FerretDB $version from $module (once; cached in $dir)"
  src="$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src" ]] || die "go mod download $module@$version gave no source folder"
  mkdir -p "$dir"
  tmp="$(mktemp -d "$dir/.build.XXXXXX")"
  cp -r "$src/." "$tmp/src" && chmod -R u+w "$tmp/src"
  printf '%s\n' "$version" >"$tmp/src/build/version/version.txt"
  printf 'sagascope-cache\n' >"$tmp/src/build/version/package.txt"
  (cd "$tmp/src" && GOFLAGS=-mod=mod go build -trimpath -o "$tmp/ferretdb" ./cmd/ferretdb) \
    || { rm -rf "$tmp"; die "go build of FerretDB $version failed"; }
  mv "$tmp/ferretdb" "$bin" && rm -rf "$tmp"
fi
printf '%s\n' "$bin"
