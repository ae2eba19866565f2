"""The EVM adapter: the escrow and vault contracts, their build and web3.py access.

- ``contracts/Escrow.vy`` (P2P settlement), ``contracts/Vault.vy`` (users' funds),
  ``contracts/TestToken.vy`` and their committed artifacts in ``contracts/build/``
  (:mod:`.compile` reproduces them; it needs the ``contracts`` extra);
- :mod:`.chain`: web3.py access (deploy, unsigned transactions per step, dev-mode sending,
  the escrow's log decoding into :mod:`orrange.settlement.events`, the test token);
- :mod:`.vault`: the vault's transactions, its EIP-712 withdrawal authorizations
  (``sign_withdrawal``) and its funds events (``VaultDeposited``, ``VaultWithdrawn``,
  ``VaultWithdrawalCanceled``); docs/vault.md is its design and threat model.

The local development node (anvil) is :mod:`orrange.infra.anvil`.
"""
