# mk/operator.mk — the operator's side: SLOs as code, dashboards as code, game days.
.PHONY: slo dashboards gameday

slo: ## regenerate observability/prometheus/slo.rules.yml from the Sloth specs in observability/slo/
	"$$(bash $(BACKENDS)/build_sloth.sh)" generate -i observability/slo/sagascope.slo.yml -o observability/prometheus/slo.rules.yml

dashboards: $(STAMP) ## regenerate dashboards/*.json from dashboards/build.py (grafana-foundation-sdk)
	$(PY) dashboards/build.py

gameday: $(STAMP) backends ## a game day on the local stack: make gameday SCENARIO=payment-latency (list: sagascope gameday --list)
	$(VENV)/bin/sagascope gameday $(SCENARIO)
