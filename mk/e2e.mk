# mk/e2e.mk — the services against the real backends (no Docker).
.PHONY: stack e2e

stack: $(STAMP) stack-backends-up ## real Collector/Jaeger/ES/Prometheus + the three services pointed at them (Ctrl-C stops the services)
	OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 JAEGER_URL=http://127.0.0.1:16686 \
	ELASTICSEARCH_URL=http://127.0.0.1:9200 $(VENV)/bin/sagascope up --faults

e2e: $(STAMP) backends ## start backends + services, run the demo and a short load, assert in Jaeger, ES, Prometheus
	$(PY) -m tools.run_e2e
