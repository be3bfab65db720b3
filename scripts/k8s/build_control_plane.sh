#!/usr/bin/env bash
# Build the control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) and the
# node (kubelet, kube-proxy) from k8s.io/kubernetes, once, cached
# by version in $SAGASCOPE_CACHE/k8s-$KUBERNETES_VERSION/.
#
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/client-go, ...) with local
# paths, so `go install k8s.io/kubernetes/cmd/...@vX` is refused. A throwaway wrapper module
# requires k8s.io/kubernetes and replaces each staging module with its published v0.<minor>.<patch>;
# the replace list is generated from k8s.io/kubernetes's own go.mod, so a version bump needs no
# edit here. -ldflags set the version the binaries report (otherwise v0.0.0-master).
source "$(dirname "${BASH_SOURCE[0]}")/../backends/lib.sh"

version="$(_env_value KUBERNETES_VERSION)"            # v1.37.2
staging="v0.${version#v1.}"                            # v0.37.2
dir="$SAGASCOPE_CACHE/k8s-$version"
cmds=(kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy)

have_all() { local c; for c in "${cmds[@]}"; do [[ -x "$dir/$c" ]] || return 1; done; }
if have_all; then printf '%s\n' "$dir"; exit 0; fi

command -v go >/dev/null || die "Go is needed to build Kubernetes $version"
# One build at a time: a second caller (a test, another clone) waits here instead of wiping the
# work directory under the first; when the lock is ours, the first may have finished the job.
mkdir -p "$SAGASCOPE_CACHE"
exec {lock}>"$SAGASCOPE_CACHE/.k8s-$version.lock"
flock "$lock"
if have_all; then printf '%s\n' "$dir"; exit 0; fi
log "building ${cmds[*]} $version (once; cached in $dir)"
export GOFLAGS=-mod=mod
gomod="$(go list -m -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
[[ -f "$gomod" ]] || die "could not read k8s.io/kubernetes@$version's go.mod"

work="$SAGASCOPE_CACHE/build/k8s-$version.$$"  # per process: an older copy of this script wipes only its own
rm -rf "$work" && mkdir -p "$work"
{
  echo "module sagascope.local/k8s-control-plane"
  echo
  echo "go $(sed -n 's/^go //p' "$gomod")"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  echo "replace ("
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
  echo ")"
} >"$work/go.mod"
log "wrapper module: $(grep -c ' => ' "$work/go.mod") staging replaces at $staging"

pkg=k8s.io/component-base/version
minor="${version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
(
  cd "$work"
  go get "k8s.io/kubernetes@$version"
  mkdir -p bin
  go build -trimpath -ldflags "$ldflags" -o bin/ \
    "${cmds[@]/#/k8s.io/kubernetes/cmd/}"
) || die "building Kubernetes $version failed (wrapper module in $work)"
mkdir -p "$dir"
for c in "${cmds[@]}"; do mv "$work/bin/$c" "$dir/$c"; done
rm -rf "$work"
printf '%s\n' "$dir"
