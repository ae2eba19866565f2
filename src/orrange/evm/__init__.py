"""The EVM adapter of settlement: the escrow contract, its build and web3.py access.

- ``contracts/Escrow.vy``, ``contracts/TestToken.vy`` and their committed artifacts in
  ``contracts/build/`` (:mod:`.compile` reproduces them; it needs the ``contracts`` extra);
- :mod:`.chain`: web3.py access (deploy, unsigned transactions per step, dev-mode sending,
  log decoding into :mod:`orrange.settlement.events`).

The local development node (anvil) is :mod:`orrange.infra.anvil`.
"""
