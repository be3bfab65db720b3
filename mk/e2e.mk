# mk/e2e.mk — the services against the real backends (no Docker).
.PHONY: stack e2e

stack: $(STAMP) backends ## real Collector/Jaeger/ES/Prometheus + the three services pointed at them (Ctrl-C stops everything)
	$(VENV)/bin/sagascope stack --faults

e2e: $(STAMP) backends ## start backends + services, run the demo and a short load, assert in Jaeger, ES, Prometheus
	$(PY) -m tools.run_e2e
