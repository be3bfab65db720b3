#!/usr/bin/env bash
# Everything `make k8s-verify` runs, built once from the Go module proxy and cached by version
# outside the clone. Prints KEY=VALUE lines (read by tests/deploy). A second run takes seconds.
source "$(dirname "${BASH_SOURCE[0]}")/../backends/lib.sh"
here="$(dirname "${BASH_SOURCE[0]}")"
export GOFLAGS=-mod=mod

k8s_dir="$(bash "$here/build_control_plane.sh")"
etcd="$(bash "$here/build_wrapped.sh" etcd go.etcd.io/etcd/server/v3 "$(_env_value ETCD_VERSION)" go.etcd.io/etcd/server/v3)"
kube_score="$(bash "$REPO_ROOT/scripts/backends/go_tool.sh" kube-score \
  github.com/zegl/kube-score/cmd/kube-score "$(_env_value KUBE_SCORE_VERSION)")"
istioctl="$(bash "$REPO_ROOT/scripts/backends/go_tool.sh" istioctl \
  istio.io/istio/istioctl/cmd/istioctl "$(_env_value ISTIOCTL_VERSION)")"
sd_check="$(bash "$here/build_sdcheck.sh")"

# Istio's CRDs as istio.io/api ships them (the module holds the generated YAML).
api_version="$(_env_value ISTIO_API_VERSION)"
crds="$SAGASCOPE_CACHE/tools/istio-api-$api_version/customresourcedefinitions.gen.yaml"
if [[ ! -s "$crds" ]]; then
  api_dir="$(go mod download -json "istio.io/api@$api_version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  [[ -f "$api_dir/kubernetes/customresourcedefinitions.gen.yaml" ]] || die "istio.io/api@$api_version has no CRD file"
  mkdir -p "$(dirname "$crds")"
  cp "$api_dir/kubernetes/customresourcedefinitions.gen.yaml" "$crds"
fi

printf 'KUBE_APISERVER=%s\n' "$k8s_dir/kube-apiserver"
printf 'KUBE_CONTROLLER_MANAGER=%s\n' "$k8s_dir/kube-controller-manager"
printf 'KUBECTL=%s\n' "$k8s_dir/kubectl"
printf 'ETCD=%s\n' "$etcd"
printf 'KUBE_SCORE=%s\n' "$kube_score"
printf 'ISTIOCTL=%s\n' "$istioctl"
printf 'ISTIO_CRDS=%s\n' "$crds"
printf 'SD_CHECK=%s\n' "$sd_check"
