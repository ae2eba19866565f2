"""P2P settlement: the escrow contract and everything that follows a trade to its end.

- ``contracts/Escrow.vy``, ``contracts/TestToken.vy`` and their committed artifacts in
  ``contracts/build/`` (:mod:`.compile` reproduces them);
- :mod:`.chain`: web3.py access (deploy, unsigned transactions per step, dev-mode sending,
  log decoding into :mod:`.events`);
- :mod:`.lifecycle`: the pure trade state machine; :mod:`.reputation`: the user score;
  :mod:`.config`: deadlines per payment method (``config/settlement.toml``);
- :mod:`.anvil`: a local EVM node from the npm registry.
"""
