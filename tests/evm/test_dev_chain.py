"""The development chain (``orrange infra chain`` on anvil): the escrow, the vault and the two
test tokens at their fixed addresses, deployed once, and a deposit and a signed withdrawal
through the vault over JSON-RPC with the development signer key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rlp
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from orrange.evm.chain import Token, TransactionRejected, connect, send_dev
from orrange.evm.vault import SIGNER_DELAY_S, Vault, VaultDeposited, VaultWithdrawn, Withdrawal
from orrange.evm.vault import sign_withdrawal as sign
from orrange.infra import free_port
from orrange.infra.run import (
    DEV_ESCROW_ADDRESS,
    DEV_TOKEN_ADDRESSES,
    DEV_VAULT_ADDRESS,
    DEV_VAULT_SIGNER_ADDRESS,
    DEV_VAULT_SIGNER_KEY,
    dev_chain_env,
)

ROOT = Path(__file__).resolve().parents[2]
ORRANGE = str(Path(sys.executable).parent / "orrange")
ANVIL_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ANVIL_ACCOUNT_3 = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def create_address(sender: str, nonce: int) -> str:
    """CREATE's contract address: keccak(rlp([sender, nonce]))[12:] (the Yellow Paper)."""
    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def test_dev_addresses_are_account_0s_first_creations_and_the_key_is_account_3s() -> None:
    expected = [DEV_ESCROW_ADDRESS, DEV_VAULT_ADDRESS, *DEV_TOKEN_ADDRESSES.values()]
    assert [create_address(ANVIL_ACCOUNT_0, n) for n in range(4)] == expected
    assert list(DEV_TOKEN_ADDRESSES) == ["USDT", "BTC"]
    assert Account.from_key(DEV_VAULT_SIGNER_KEY).address == DEV_VAULT_SIGNER_ADDRESS
    assert DEV_VAULT_SIGNER_ADDRESS == ANVIL_ACCOUNT_3
    env = dev_chain_env({"ORRANGE_ENV": "dev", "ORRANGE_CHAIN_PORT": "9999"})
    assert env["ORRANGE_VAULT_ADDRESS"] == DEV_VAULT_ADDRESS
    assert dev_chain_env({"ORRANGE_ENV": "dev", "ORRANGE_CHAIN_URL": "http://x"}) == {}


def start_chain(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [ORRANGE, "infra", "chain"], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
        )


def wait_ready(proc: subprocess.Popen[bytes], log: Path, run: int) -> None:
    deadline = time.monotonic() + 180
    while log.read_text().count("dev chain ready") < run:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the dev chain never became ready"
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


@pytest.mark.chain
@pytest.mark.process
def test_dev_chain_deploys_the_vault_and_tokens_once_and_pays_a_signed_withdrawal(
    private_dir: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORRANGE_")}
    env.update(
        ORRANGE_ENV="dev",
        ORRANGE_CHAIN_PORT=str(free_port()),
        ORRANGE_DATA_DIR=str(private_dir / "var"),
        ORRANGE_LOG_FORMAT="json",
    )
    log = private_dir / "chain.log"
    proc = start_chain(env, log)
    try:
        wait_ready(proc, log, 1)
        w3 = connect(dev_chain_env(env)["ORRANGE_CHAIN_URL"])
        for address in (DEV_ESCROW_ADDRESS, DEV_VAULT_ADDRESS, *DEV_TOKEN_ADDRESSES.values()):
            assert len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0, address
        vault = Vault(w3, DEV_VAULT_ADDRESS)
        assert (vault.owner(), vault.signer()) == (ANVIL_ACCOUNT_0, DEV_VAULT_SIGNER_ADDRESS)
        assert vault.signer_delay_s() == SIGNER_DELAY_S
        for symbol, address in DEV_TOKEN_ADDRESSES.items():
            contract = Token(w3, address).contract.functions
            assert (contract.symbol().call(), contract.decimals().call()) == (symbol, 18)
            assert contract.owner().call() == ANVIL_ACCOUNT_0

        # a user deposits USDT for "alice"; the engine signs; anybody submits the withdrawal
        user, recipient = w3.eth.accounts[5], w3.eth.accounts[6]
        usdt = Token(w3, DEV_TOKEN_ADDRESSES["USDT"])
        amount = 1_500 * 10**18
        start = w3.eth.block_number
        send_dev(w3, usdt.mint_tx(ANVIL_ACCOUNT_0, user, amount))
        send_dev(w3, usdt.approve_tx(user, vault.address, amount))
        send_dev(w3, vault.deposit_token_tx(user, usdt.address, amount, "alice"))
        now = int(w3.eth.get_block("latest")["timestamp"])
        w = Withdrawal(
            account="alice",
            token=usdt.address,
            amount=amount // 3,
            to=recipient,
            withdrawal_id=bytes.fromhex("5a" * 32),
            expiry=now + 600,
        )
        forged = sign(Account.create().key, w3.eth.chain_id, vault.address, w)
        with pytest.raises(TransactionRejected, match="bad signature"):  # JSON-RPC reason
            vault.withdraw_tx(user, w, forged)
        signature = sign(DEV_VAULT_SIGNER_KEY, w3.eth.chain_id, vault.address, w)
        send_dev(w3, vault.withdraw_tx(user, w, signature))
        assert usdt.balance_of(recipient) == amount // 3
        assert vault.reserves(usdt.address) == amount - amount // 3
        kinds = [type(e) for e in vault.events(start)]
        assert kinds == [VaultDeposited, VaultWithdrawn]
        height = w3.eth.block_number
    finally:
        code = stop(proc)
    assert code == 0
    # a restart loads the saved chain: nothing is deployed again, the state is still there
    proc = start_chain(env, log)
    try:
        wait_ready(proc, log, 2)
        w3 = connect(dev_chain_env(env)["ORRANGE_CHAIN_URL"])
        assert w3.eth.block_number >= height
        assert Vault(w3, DEV_VAULT_ADDRESS).used(bytes.fromhex("5a" * 32))
    finally:
        assert stop(proc) == 0
    text = log.read_text()
    assert [text.count(f"{what} deployed") for what in ("escrow", "vault", "token")] == [1, 1, 2]
