"""Running sagascope on this machine: the local topology, one process supervisor, and what it runs.

- :mod:`~sagascope.local.topology` — every local port and endpoint, defined once, with the
  environment variable that sets each (the services' settings read their defaults from it).
- :mod:`~sagascope.local.supervisor` — start a command with its environment and a log file,
  wait for it to be healthy, stop its whole process group (SIGTERM, then SIGKILL), restart it.
- :mod:`~sagascope.local.services` — the three services and nx-27017 (:class:`LocalStack`).
- :mod:`~sagascope.local.backends` — the real Collector, Jaeger, Elasticsearch and Prometheus,
  from the same config files docker compose mounts.

Used by the ``sagascope`` command, the process-level tests, the benchmarks and ``make e2e``.
"""
