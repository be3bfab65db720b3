#!/usr/bin/env bash
# Build one Go command from the Go module proxy, once, into the cache outside the clone.
#
#   scripts/backends/go_tool.sh NAME MODULE_PATH VERSION   # prints the binary's path on stdout
#   e.g. go_tool.sh grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.3
#
# The binary lands in $SAGASCOPE_CACHE/tools/NAME-VERSION/NAME, so a second run (or a fresh
# clone on the same machine) only checks that it exists. Pin VERSION in .env next to the
# backends' versions; callers pass it through. Extra `go install` flags: GO_TOOL_LDFLAGS.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# == 3)) || die "usage: go_tool.sh NAME MODULE_PATH VERSION"
name="$1" module="$2" version="$3"
dir="$SAGASCOPE_CACHE/tools/$name-$version"
bin="$dir/$name"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || die "Go is needed to build $name $version (go install $module@$version)"
  mkdir -p "$dir"
  # One build of NAME-VERSION at a time; a second caller waits, then finds the binary.
  exec {lock}>"$dir/.lock"
  flock "$lock"
fi
if [[ ! -x "$bin" ]]; then
  log "building $name $version from $module (once; cached in $dir)"
  tmp="$(mktemp -d "$dir/.build.XXXXXX")"
  GOBIN="$tmp" GOFLAGS=-mod=mod go install ${GO_TOOL_LDFLAGS:+-ldflags "$GO_TOOL_LDFLAGS"} "$module@$version" \
    || { rm -rf "$tmp"; die "go install $module@$version failed"; }
  built="$tmp/$(basename "$module")"
  [[ -x "$built" ]] || built="$(find "$tmp" -maxdepth 1 -type f -perm -u+x | head -n1)"
  mv "$built" "$bin" && rm -rf "$tmp"
fi
printf '%s\n' "$bin"
