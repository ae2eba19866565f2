"""Fixtures for the settlement tests: a fresh in-process EVM (eth-tester on py-evm)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from kit.chain_env import ChainEnv
from web3 import EthereumTesterProvider, Web3

from orrange.evm.chain import Escrow, Token, send_dev

FEE_BPS = 150  # 1.5 %


@dataclass
class Env(ChainEnv):
    escrow: Escrow
    token: Token
    deployer: str
    seller: str
    buyer: str
    mediator: str
    fee_recipient: str
    stranger: str


@pytest.fixture
def evm() -> Env:
    w3 = Web3(EthereumTesterProvider())
    a = w3.eth.accounts
    deployer, seller, buyer, mediator, fee_recipient, stranger = a[:6]
    escrow = Escrow.deploy(
        w3, deployer, mediator=mediator, fee_recipient=fee_recipient, fee_bps=FEE_BPS
    )
    token = Token.deploy(w3, deployer, name="Test USD", symbol="TUSD", decimals=6)
    send_dev(w3, token.mint_tx(deployer, seller, 10**15))
    return Env(w3, escrow, token, deployer, seller, buyer, mediator, fee_recipient, stranger)
