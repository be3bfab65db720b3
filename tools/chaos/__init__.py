"""`make chaos`: many sagas against real processes while faults are injected from outside, then an audit.

    .venv/bin/python -m tools.chaos [--sagas 2000] [--seed 7] [--concurrency 12] [--report PATH]

The modules, one role each: ``schedule`` (which fault, when: seeded), ``workload`` (which sagas,
with which duplicates and fault flags: seeded), ``toxiproxy`` (a small client for its HTTP API),
``environment`` (PostgreSQL, toxiproxy and the services as supervised processes on ephemeral
ports), ``injector`` (runs the schedule against the environment), ``auditor`` (reads both
databases and checks the money), ``report`` (markdown) and ``campaign`` (puts them together).
"""
