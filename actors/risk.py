"""The risk process: ``python -m actors.risk [--symbols ...] [--max-open-orders N]``.

A thin shell around :func:`orrange.engine.risk.main` (same as ``orrange actor risk``).
"""

import sys

from orrange.engine.risk import main

if __name__ == "__main__":
    sys.exit(main())
