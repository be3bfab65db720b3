"""`python -m tools.chaos`: see tools/chaos/campaign.py."""

import sys

from tools.chaos.campaign import main

sys.exit(main())
