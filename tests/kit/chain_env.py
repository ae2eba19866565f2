"""Helpers of the contract tests on eth-tester (tests/settlement, tests/evm).

* :class:`ChainEnv`: the in-process chain's clock and ETH balances (a base of each
  directory's ``evm`` fixture value).
* :class:`Asset`: ETH or the environment's test token behind one interface.
* :func:`gas_cost`: what a transaction's gas cost its sender, in wei.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from web3 import Web3
from web3.types import TxReceipt

from orrange.evm.chain import Token
from orrange.settlement.events import ZERO_ADDRESS


def gas_cost(receipt: TxReceipt) -> int:
    """Gas used times the effective gas price (wei)."""
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


@dataclass
class ChainEnv:
    """An eth-tester chain reached through ``w3``."""

    w3: Web3

    def now(self) -> int:
        """The latest block's timestamp (unix s)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel_to(self, timestamp: int) -> None:
        """Mine the next block at ``timestamp`` (unix s)."""
        self.w3.provider.ethereum_tester.time_travel(timestamp)  # type: ignore[attr-defined]

    def eth(self, who: str) -> int:
        """``who``'s ETH balance (wei)."""
        return int(self.w3.eth.get_balance(who))  # type: ignore[arg-type]


class _TokenEnv(Protocol):
    token: Token

    def eth(self, who: str) -> int: ...


class Asset:
    """ETH (``kind="eth"``, the zero address) or ``evm.token`` (``kind="token"``)."""

    def __init__(self, evm: _TokenEnv, kind: str) -> None:
        self.evm = evm
        self.kind = kind
        self.address = ZERO_ADDRESS if kind == "eth" else evm.token.address

    def balance(self, who: str) -> int:
        """``who``'s balance of this asset (base units)."""
        return self.evm.eth(who) if self.kind == "eth" else self.evm.token.balance_of(who)

    def spent_on_gas(self, receipt: TxReceipt) -> int:
        """What a sender's balance of this asset lost to gas (0 for a token)."""
        return gas_cost(receipt) if self.kind == "eth" else 0
