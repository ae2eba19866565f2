"""A vault on a real anvil node with two test tokens, and the ``funds.chain`` messages read
back from NATS (the vault watcher and the funds CLI tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats
from eth_account import Account
from web3 import Web3

from orrange.evm.chain import Token, connect, send_dev
from orrange.evm.vault import MIN_SIGNER_DELAY_S, Vault
from orrange.infra.anvil import AnvilNode
from orrange.ledger.assets import AssetSpec, load_assets
from orrange.runtime import MSG_ID_HEADER
from orrange.wire.funds import FUNDS, FUNDS_CHAIN_SUBJECT, FundsMessage

#: The withdrawal signer's key in these tests (an address anvil does not hold).
SIGNER_KEY = "0x" + "5e" * 32

_dec: msgspec.json.Decoder[FundsMessage] = msgspec.json.Decoder(FundsMessage)


@dataclass
class VaultChain:
    """The node, the vault (owner: account 0, signer: :data:`SIGNER_KEY`'s address), the
    ``USDT`` test token (minter: account 0), the assets (``ETH``, ``USDT``) and their TOML."""

    node: AnvilNode
    w3: Web3
    vault: Vault
    usdt: Token
    assets: dict[str, AssetSpec]
    assets_toml: Path

    @property
    def signer(self) -> str:
        return str(Account.from_key(SIGNER_KEY).address)

    def deposit(self, sender: str, user: str, asset: str, amount: int) -> int:
        """A real deposit of ``amount`` base units for ``user``; returns its block number."""
        if asset == "ETH":
            receipt = send_dev(self.w3, self.vault.deposit_tx(sender, user, amount))
        else:
            token = self.usdt if asset == "USDT" else Token(self.w3, asset)
            send_dev(self.w3, token.mint_tx(self.w3.eth.accounts[0], sender, amount))
            send_dev(self.w3, token.approve_tx(sender, self.vault.address, amount))
            receipt = send_dev(
                self.w3, self.vault.deposit_token_tx(sender, token.address, amount, user)
            )
        return int(receipt["blockNumber"])

    def mine(self, n: int = 1) -> None:
        for _ in range(n):
            self.node.rpc("evm_mine")


def vault_chain(node: AnvilNode, tmp_path: Path) -> VaultChain:
    """Deploy the vault and the test token on ``node``; write ``assets.toml`` to ``tmp_path``."""
    w3 = connect(node.url)
    owner = w3.eth.accounts[0]
    signer = str(Account.from_key(SIGNER_KEY).address)
    vault = Vault.deploy(w3, owner, signer=signer, signer_delay_s=MIN_SIGNER_DELAY_S)
    usdt = Token.deploy(w3, owner, name="Tether", symbol="USDT", decimals=18)
    text = (
        '[[asset]]\ncode = "ETH"\ndecimals = 18\ntoken = "native"\n\n'
        f'[[asset]]\ncode = "USDT"\ndecimals = 18\ntoken = "{usdt.address.lower()}"\n'
    )
    path = tmp_path / "assets.toml"
    path.write_text(text)
    return VaultChain(node, w3, vault, usdt, load_assets(text), path)


async def funds_messages(nats_url: str) -> list[tuple[str, FundsMessage]]:
    """``(Nats-Msg-Id, message)`` of everything on ``funds.chain``, in stream order."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(FUNDS.name)
        out: list[tuple[str, FundsMessage]] = []
        if info.state.messages == 0:
            return out
        sub = await js.subscribe(FUNDS_CHAIN_SUBJECT, stream=FUNDS.name, ordered_consumer=True)
        try:
            while len(out) < info.state.messages:
                try:
                    m = await sub.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    break
                out.append(((m.headers or {}).get(MSG_ID_HEADER, ""), _dec.decode(m.data)))
        finally:
            await sub.unsubscribe()
        return out
    finally:
        await nc.close()
