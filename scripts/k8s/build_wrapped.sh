#!/usr/bin/env bash
# Build one Go command whose module replaces sibling modules with local paths (so
# `go install MODULE@VERSION` is refused), through a throwaway wrapper module that requires it and
# replaces each of those siblings with its published release of the same VERSION. The replace
# list is read from the module's own go.mod. Cached like go_tool.sh:
#   build_wrapped.sh NAME MODULE VERSION PACKAGE   # prints $SAGASCOPE_CACHE/tools/NAME-VERSION/NAME
#   e.g. build_wrapped.sh etcd go.etcd.io/etcd/server/v3 v3.6.16 go.etcd.io/etcd/server/v3
source "$(dirname "${BASH_SOURCE[0]}")/../backends/lib.sh"

(($# == 4)) || die "usage: build_wrapped.sh NAME MODULE VERSION PACKAGE"
name="$1" module="$2" version="$3" package="$4"
dir="$SAGASCOPE_CACHE/tools/$name-$version"
bin="$dir/$name"
if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || die "Go is needed to build $name $version"
  # One build of NAME-VERSION at a time (a concurrent one would wipe the work directory).
  mkdir -p "$dir"
  exec {lock}>"$dir/.lock"
  flock "$lock"
fi
if [[ ! -x "$bin" ]]; then
  export GOFLAGS=-mod=mod
  gomod="$(go list -m -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  [[ -f "$gomod" ]] || die "could not read $module@$version's go.mod"
  log "building $name $version from $module through a wrapper module (once; cached in $dir)"
  work="$SAGASCOPE_CACHE/build/$name-$version"
  rm -rf "$work" && mkdir -p "$work"
  {
    echo "module sagascope.local/$name-build"
    echo
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo
    echo "require $module $version"
    echo
    echo "replace ("
    # `X => ../path` (local siblings) become `X => X VERSION`; FORBIDDEN_DEPENDENCY guards are dropped.
    grep -v FORBIDDEN "$gomod" \
      | sed -n 's#^\s*\(replace \)\{0,1\}\([^ ]*\) => \.\{1,2\}/[^ ]*$#\2#p' \
      | grep -vx "$module" | sed "s#.*#\t& => & $version#" || true
    echo ")"
  } >"$work/go.mod"
  mkdir -p "$dir"
  (cd "$work" && go get "$module@$version" && go build -trimpath -ldflags "-s -w" -o "$bin" "$package") \
    || { rm -rf "$work"; die "building $name $version failed"; }
  rm -rf "$work"
fi
printf '%s\n' "$bin"
