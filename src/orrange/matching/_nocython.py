"""Stand-in for the ``cython`` module where Cython is not installed: ``book.py`` then runs
as the plain Python it is (``cython.compiled`` is false)."""

compiled = False
