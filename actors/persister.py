"""The persister process: ``python -m actors.persister [--database-url URL]``.

A thin shell around :func:`orrange.engine.persister.main` (same as ``orrange actor persister``).
"""

import sys

from orrange.engine.persister import main

if __name__ == "__main__":
    sys.exit(main())
