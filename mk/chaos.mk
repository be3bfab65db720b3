# mk/chaos.mk — the chaos campaign (tools/chaos): sagas against real processes while faults are
# injected from outside, then an auditor reads both databases. Ephemeral ports only, so it may run
# beside other work. CHAOS_SAGAS / CHAOS_SEED / CHAOS_CONCURRENCY / CHAOS_REPORT / CHAOS_MONGO
# (nx-27017 or ferretdb: payment's MongoDB-wire server) tune it.
.PHONY: toxiproxy-install ferretdb-install chaos

TOXIPROXY_VERSION ?= $(shell sed -n 's/^TOXIPROXY_VERSION=//p' .env)
CHAOS_SAGAS ?= 2000
CHAOS_SEED ?= 7
CHAOS_CONCURRENCY ?= 12
CHAOS_REPORT ?= benchmarks/chaos/REPORT.md
CHAOS_MONGO ?= nx-27017
export CHAOS_SAGAS CHAOS_SEED CHAOS_CONCURRENCY CHAOS_REPORT CHAOS_MONGO

toxiproxy-install: ## build toxiproxy-server once into $${SAGASCOPE_CACHE:-~/.cache/sagascope}/tools (Go module proxy)
	bash scripts/backends/go_tool.sh toxiproxy-server github.com/Shopify/toxiproxy/v2/cmd/server $(TOXIPROXY_VERSION)

ferretdb-install: ## build FerretDB (payment's second MongoDB-wire server in the integration tier) once into the cache
	nice bash scripts/backends/build_ferretdb.sh

chaos: $(STAMP) toxiproxy-install ## chaos campaign: CHAOS_SAGAS (2000) sagas, network faults, SIGKILLs, restarts; audit -> CHAOS_REPORT
	$(PY) -m tools.chaos
