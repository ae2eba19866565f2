"""The shared test kit: helpers and stack builders the test directories import as ``kit.*``.

``tests`` is on ``sys.path`` (``pythonpath`` in pyproject's pytest options), so a test writes
``from kit.wait import wait_for``; nothing here is collected as tests.

* :mod:`kit.wait`: ``wait_for``, the one polling hang guard.
* :mod:`kit.api_stack`: the API on uvicorn with in-process actors (``api_stack``,
  ``running_api``, ``engine_actors``).
* :mod:`kit.runtime_actors`: the runtime tests' pass-through actor (also run as a script).
* :mod:`kit.matcher_events`: the matcher's events read back from NATS and from the pure core.
* :mod:`kit.store_expect`: a book run and what PostgreSQL must hold after it.
* :mod:`kit.feeds_captures`, :mod:`kit.feeds_server`, :mod:`kit.feeds_helpers`: recorded
  exchange frames, fake exchanges serving them, a tick collector.
* :mod:`kit.book_helpers`, :mod:`kit.cmd_strategies`, :mod:`kit.reference_book`: matching
  helpers, hypothesis command streams, the reference matcher.
* :mod:`kit.md_data`: the Binance market-data set.
* :mod:`kit.chain_env`: the eth-tester contract tests' chain clock and ETH/token assets.
* :mod:`kit.vault_chain`: a vault and a test token on anvil, the ``funds.chain`` messages.
"""
