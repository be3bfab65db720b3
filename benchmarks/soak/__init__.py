"""`make soak`: the stack on PostgreSQL, telemetry on, at half its measured capacity for SOAK_MINUTES.

Modules: run.py (the command: capacity, the steady phase, the verdicts), load.py (the open-loop
driver and the request mix), sampler.py (every process's RSS, descriptors, threads, asyncio tasks
and pool checkouts every 10 s), verdicts.py (slopes, growth, p95 drift: pure functions),
report.py (benchmarks/soak/REPORT.md) and plot.py (the PNG).
"""
