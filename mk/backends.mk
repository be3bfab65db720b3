# mk/backends.mk — real observability backends on this machine, no Docker.
# Included from the Makefile (`include mk/backends.mk`). Caches live outside
# the repo in $(SAGASCOPE_CACHE) (default ~/.cache/sagascope), the Go module
# cache and ~/.m2, so a second `make backends` — even from a fresh clone —
# only checks stamps.
BACKENDS := scripts/backends
SAGASCOPE_CACHE ?= $(HOME)/.cache/sagascope
export SAGASCOPE_CACHE
OTELCOL_CONFIG := observability/otel-collector/otelcol-config.yml
PROM_DIR := observability/prometheus

.PHONY: backends stack-backends \
        promtool-test collector-validate compose-validate

backends: ## install/build Prometheus, Jaeger v2, the Collector (ocb), Elasticsearch (cached)
	@start=$$(date +%s); \
	bash $(BACKENDS)/install_prometheus.sh && \
	bash $(BACKENDS)/install_tools.sh && \
	bash $(BACKENDS)/build_collector.sh && \
	bash $(BACKENDS)/build_jaeger.sh && \
	bash $(BACKENDS)/install_elasticsearch.sh && \
	echo "[backends] ready in $$(( $$(date +%s) - start ))s (cache: $(SAGASCOPE_CACHE))"

stack-backends: $(STAMP) backends ## only the Collector, Jaeger, Elasticsearch, Prometheus as local processes (Ctrl-C stops them)
	$(VENV)/bin/sagascope stack --backends-only

promtool-test: ## promtool: check config, check rules, unit-test the alert rules
	promtool check config $(PROM_DIR)/prometheus.yml
	promtool check rules $(PROM_DIR)/*rules*.yml
	promtool test rules $(PROM_DIR)/tests/*.test.yml

collector-validate: $(STAMP) ## the locally built collector accepts the base config and every profile combination
	@bash $(BACKENDS)/build_collector.sh
	PYTHON=$(PY) bash $(BACKENDS)/collector_validate.sh

compose-validate: ## docker-compose.yaml against the compose-spec JSON schema
	@bash $(BACKENDS)/install_tools.sh
	$(SAGASCOPE_CACHE)/elk-venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yaml
