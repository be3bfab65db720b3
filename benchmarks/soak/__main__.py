"""``python -m benchmarks.soak``: see benchmarks/soak/run.py."""

from benchmarks.soak.run import main

raise SystemExit(main())
