"""P2P settlement, pure: everything that follows a trade to its end, as values.

- :mod:`.lifecycle`: the trade state machine; :mod:`.reputation`: the user score;
  :mod:`.events`: what the escrow contract logs; :mod:`.config`: deadlines per payment method
  (``config/settlement.toml``).

The contract, its build and web3.py access are :mod:`orrange.evm`; the local EVM node is
:mod:`orrange.infra.anvil`.
"""
