"""The matcher process: ``python -m actors.matcher --symbols BTC-USDT,ETH-USDT``.

A thin shell around :func:`orrange.engine.matcher.main` (same as ``orrange actor matcher``).
"""

import sys

from orrange.engine.matcher import main

if __name__ == "__main__":
    sys.exit(main())
