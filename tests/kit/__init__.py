"""The shared test kit: helpers and stack builders the test directories import as ``kit.*``.

``tests`` is on ``sys.path`` (``pythonpath`` in pyproject's pytest options), so a test writes
``from kit.wait import wait_for``; nothing here is collected as tests.

* :mod:`kit.wait`: ``wait_for``, the one polling hang guard.
"""
