#!/usr/bin/env bash
# Everything `make k8s-up` runs, built once from the Go module proxy and cached by version outside
# the clone: the Kubernetes control plane and node (build_control_plane.sh), etcd, CoreDNS and
# kube-router (static: CoreDNS runs in a `FROM scratch` image). Prints KEY=VALUE lines (read by
# tools/k8s_cluster). A second run takes a second.
source "$(dirname "${BASH_SOURCE[0]}")/../backends/lib.sh"
here="$(dirname "${BASH_SOURCE[0]}")"
export GOFLAGS=-mod=mod

k8s_dir="$(bash "$here/build_control_plane.sh")"
etcd="$(bash "$here/build_wrapped.sh" etcd go.etcd.io/etcd/server/v3 "$(_env_value ETCD_VERSION)" go.etcd.io/etcd/server/v3)"
coredns="$(CGO_ENABLED=0 bash "$REPO_ROOT/scripts/backends/go_tool.sh" coredns github.com/coredns/coredns "$(_env_value COREDNS_VERSION)")"
kube_router="$(CGO_ENABLED=0 bash "$REPO_ROOT/scripts/backends/go_tool.sh" kube-router \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "$(_env_value KUBE_ROUTER_VERSION)")"

printf 'K8S_DIR=%s\n' "$k8s_dir"
printf 'ETCD=%s\n' "$etcd"
printf 'COREDNS=%s\n' "$coredns"
printf 'KUBE_ROUTER=%s\n' "$kube_router"
