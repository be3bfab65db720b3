# mk/k8s.mk — the Kubernetes/Istio manifests (deploy/k8s/) proven on a real control plane.
# Tools are built once from the Go module proxy (scripts/k8s/install_tools.sh) and cached
# by version in $(SAGASCOPE_CACHE); the first run takes a while, later runs seconds.
.PHONY: k8s-tools k8s-render k8s-verify k8s-images k8s-up k8s-down k8s-status k8s-run-verify

k8s-tools: ## build kube-apiserver/controller-manager/kubectl, etcd, istioctl, kube-score, sdcheck (once, cached)
	bash scripts/k8s/install_tools.sh

k8s-render: ## print `kubectl kustomize deploy/k8s/overlays/$$OVERLAY` (default dev) with the built kubectl
	@kubectl="$$(bash scripts/k8s/install_tools.sh | sed -n 's/^KUBECTL=//p')" && \
	"$$kubectl" kustomize deploy/k8s/overlays/$${OVERLAY:-dev}

k8s-verify: $(STAMP) ## deploy tier: render, apply to a real kube-apiserver (+etcd, controller-manager), istioctl, kube-score
	@start=$$(date +%s); \
	bash scripts/k8s/install_tools.sh >/dev/null \
	  || echo "[k8s] the tools could not be built (above); the tier says why and fails where SAGASCOPE_REQUIRE_K8S=1"; \
	$(PY) -m pytest tests/deploy --ignore=tests/deploy/runtime -q -rs -p no:cacheprovider; code=$$?; \
	echo "[k8s] deploy tier: exit $$code in $$(( $$(date +%s) - start ))s"; \
	if [ $$code -eq 5 ]; then echo "[k8s] pytest collected no tests: a failure"; fi; \
	exit $$code

# A real single-node cluster on this machine (tools/k8s_cluster, needs root): etcd, the control plane,
# containerd + kubelet, bridge CNI, kube-proxy, CoreDNS and kube-router, under sagascope's supervisor in
# a detached daemon. State in /var/lib/sagascope-k8s; `python -m tools.k8s_cluster env` prints the contract.
k8s-up: $(STAMP) ## start the single-node cluster (returns when Node Ready + DNS answer); prints the KUBECONFIG
	$(PY) -m tools.k8s_cluster up

k8s-down: $(STAMP) ## stop the cluster and remove everything it made (fails if anything is left)
	$(PY) -m tools.k8s_cluster down

k8s-status: $(STAMP) ## the cluster's daemon, node and Pods
	$(PY) -m tools.k8s_cluster status

k8s-run-verify: $(STAMP) ## runtime deploy tier: the dev overlay (via dev-local) running on `make k8s-up`'s cluster
	@start=$$(date +%s); \
	$(PY) -m pytest tests/deploy/runtime -q -rs -p no:cacheprovider; code=$$?; \
	echo "[k8s] runtime deploy tier: exit $$code in $$(( $$(date +%s) - start ))s"; \
	if [ $$code -eq 5 ]; then echo "[k8s] pytest collected no tests: a failure"; fi; \
	exit $$code

k8s-images: backends ## build the images the cluster runs (Debian base, the Dockerfile, stand-ins for postgres/mongo/jaeger/collector/ES/prometheus; cached as OCI archives) and load them into its containerd
	@start=$$(date +%s); bash scripts/k8s/build_images.sh; code=$$?; \
	echo "[k8s-images] exit $$code in $$(( $$(date +%s) - start ))s"; exit $$code
