# pragma version ~=0.4.3
"""
@title Orrange vault
@notice Holds users' ETH and ERC-20 for the exchange without giving anyone the power to take
    them. A deposit names the exchange account it credits (the engine's user id, like a
    deposit memo). A withdrawal pays out only with an EIP-712 authorization signed by the
    current `signer` (the engine), naming account, token, amount, recipient, a single-use
    withdrawal id and an expiry; anybody may submit it. The signer can cancel an unused id.
    The owner can only rotate the signer, after a public delay, and hand over ownership: no
    function moves funds other than a signed withdrawal.
    Every state-changing function is `@nonreentrant` and writes its state before any
    external call (checks-effects-interactions); every step emits an event.
"""

from ethereum.ercs import IERC20

# Bounds of the signer rotation delay (seconds); deployments use 2 days (docs/vault.md).
MIN_SIGNER_DELAY: constant(uint256) = 3600
MAX_SIGNER_DELAY: constant(uint256) = 30 * 86400

# secp256k1n / 2: a signature with a larger s is the malleable twin of a valid one (EIP-2).
HALF_N: constant(uint256) = (
    57896044618658097711785492504343953926418782139537452191302581570759080747168
)

# EIP-712 type hashes.
DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
WITHDRAWAL_TYPEHASH: constant(bytes32) = keccak256(
    "Withdrawal(string account,address token,uint256 amount,address to,bytes32 withdrawal_id,uint256 expiry)"
)
NAME_HASH: constant(bytes32) = keccak256("Orrange Vault")
VERSION_HASH: constant(bytes32) = keccak256("1")


event Deposited:
    account: String[64]
    token: indexed(address)
    sender: indexed(address)
    amount: uint256


event Withdrawn:
    withdrawal_id: indexed(bytes32)
    account: String[64]
    token: indexed(address)
    to: indexed(address)
    amount: uint256


event WithdrawalCanceled:
    withdrawal_id: indexed(bytes32)


event SignerProposed:
    signer: indexed(address)
    effective_at: uint256


event SignerChanged:
    previous: indexed(address)
    signer: indexed(address)


event OwnershipTransferred:
    previous: indexed(address)
    owner: indexed(address)


owner: public(address)
signer: public(address)
signer_delay: public(uint256)
pending_signer: public(address)
pending_signer_at: public(uint256)
used: public(HashMap[bytes32, bool])
# Per token (the zero address for ETH): everything deposited and everything withdrawn, in base
# units. The contract's balance of the token is at least deposited - withdrawn.
total_deposited: public(HashMap[address, uint256])
total_withdrawn: public(HashMap[address, uint256])


@deploy
def __init__(signer: address, signer_delay: uint256):
    assert signer != empty(address), "zero signer"
    assert signer_delay >= MIN_SIGNER_DELAY, "delay too short"
    assert signer_delay <= MAX_SIGNER_DELAY, "delay too long"
    self.owner = msg.sender
    self.signer = signer
    self.signer_delay = signer_delay
    log OwnershipTransferred(previous=empty(address), owner=msg.sender)
    log SignerChanged(previous=empty(address), signer=signer)


@internal
@pure
def _check_account(account: String[64]):
    # The engine's user ids: 1..64 of [A-Za-z0-9_-]; system accounts (`@fees`...) are refused.
    n: uint256 = len(account)
    assert n > 0, "empty account"
    raw: Bytes[64] = convert(account, Bytes[64])
    for i: uint256 in range(n, bound=64):
        c: uint256 = convert(slice(raw, i, 1), uint256)
        ok: bool = (
            (c >= 48 and c <= 57)  # 0-9
            or (c >= 65 and c <= 90)  # A-Z
            or (c >= 97 and c <= 122)  # a-z
            or c == 45  # -
            or c == 95  # _
        )
        assert ok, "bad account"


@external
@payable
@nonreentrant
def deposit(account: String[64]):
    """
    @notice Credits `msg.value` wei of ETH to the exchange account `account` (a user id,
        1..64 of A-Z a-z 0-9 _ -).
    """
    self._check_account(account)
    assert msg.value > 0, "zero amount"
    self.total_deposited[empty(address)] += msg.value
    log Deposited(account=account, token=empty(address), sender=msg.sender, amount=msg.value)


@external
@nonreentrant
def deposit_token(token: address, amount: uint256, account: String[64]):
    """
    @notice Pulls `amount` base units of the ERC-20 `token` from the sender (approve the
        vault first) and credits them to `account`. A token that delivers less than
        `amount` (a fee-on-transfer token) is refused.
    """
    self._check_account(account)
    assert token != empty(address), "zero token"
    assert amount > 0, "zero amount"
    self.total_deposited[token] += amount
    log Deposited(account=account, token=token, sender=msg.sender, amount=amount)
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    assert extcall IERC20(token).transferFrom(
        msg.sender, self, amount, default_return_value=True
    ), "transferFrom failed"
    assert staticcall IERC20(token).balanceOf(self) == before + amount, "short transfer"


@internal
@view
def _domain_separator() -> bytes32:
    return keccak256(
        abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self)
    )


@external
@view
def domain_separator() -> bytes32:
    """
    @notice The EIP-712 domain separator: name "Orrange Vault", version "1", this chain's
        id, this contract.
    """
    return self._domain_separator()


@internal
@view
def _digest(
    account: String[64],
    token: address,
    amount: uint256,
    to: address,
    withdrawal_id: bytes32,
    expiry: uint256,
) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(
            WITHDRAWAL_TYPEHASH, keccak256(account), token, amount, to, withdrawal_id, expiry
        )
    )
    return keccak256(concat(x"1901", self._domain_separator(), struct_hash))


@external
@view
def withdrawal_digest(
    account: String[64],
    token: address,
    amount: uint256,
    to: address,
    withdrawal_id: bytes32,
    expiry: uint256,
) -> bytes32:
    """
    @notice The EIP-712 digest the signer signs for this withdrawal.
    """
    return self._digest(account, token, amount, to, withdrawal_id, expiry)


@internal
@pure
def _recover(digest: bytes32, signature: Bytes[65]) -> address:
    assert len(signature) == 65, "bad signature length"
    r: uint256 = extract32(signature, 0, output_type=uint256)
    s: uint256 = extract32(signature, 32, output_type=uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    assert v == 27 or v == 28, "bad signature v"
    assert s <= HALF_N, "bad signature s"
    return ecrecover(digest, v, r, s)


@external
@nonreentrant
def withdraw(
    account: String[64],
    token: address,
    amount: uint256,
    to: address,
    withdrawal_id: bytes32,
    expiry: uint256,
    signature: Bytes[65],
):
    """
    @notice Pays `amount` base units of `token` (the zero address for ETH) to `to`, when
        `signature` (65 bytes r || s || v, v 27 or 28, low s) is the current signer's
        EIP-712 signature of Withdrawal(account, token, amount, to, withdrawal_id, expiry),
        `withdrawal_id` was never used or canceled, and `block.timestamp <= expiry` (unix s).
        Anybody may submit it; the id is spent before the payment.
    """
    assert amount > 0, "zero amount"
    assert to != empty(address), "zero recipient"
    assert block.timestamp <= expiry, "expired"
    assert not self.used[withdrawal_id], "withdrawal id used"
    signer: address = self._recover(
        self._digest(account, token, amount, to, withdrawal_id, expiry), signature
    )
    assert signer != empty(address) and signer == self.signer, "bad signature"
    self.used[withdrawal_id] = True
    self.total_withdrawn[token] += amount
    log Withdrawn(withdrawal_id=withdrawal_id, account=account, token=token, to=to, amount=amount)
    if token == empty(address):
        raw_call(to, b"", value=amount)
    else:
        assert extcall IERC20(token).transfer(to, amount, default_return_value=True), "transfer failed"


@external
@nonreentrant
def cancel_withdrawal(withdrawal_id: bytes32):
    """
    @notice Signer only: spends an unused withdrawal id so that its authorization can never
        be executed.
    """
    assert msg.sender == self.signer, "not signer"
    assert not self.used[withdrawal_id], "withdrawal id used"
    self.used[withdrawal_id] = True
    log WithdrawalCanceled(withdrawal_id=withdrawal_id)


@external
@nonreentrant
def propose_signer(new_signer: address):
    """
    @notice Owner only: `new_signer` may replace the signer `signer_delay` seconds from now
        (a later proposal replaces this one).
    """
    assert msg.sender == self.owner, "not owner"
    assert new_signer != empty(address), "zero signer"
    effective_at: uint256 = block.timestamp + self.signer_delay
    self.pending_signer = new_signer
    self.pending_signer_at = effective_at
    log SignerProposed(signer=new_signer, effective_at=effective_at)


@external
@nonreentrant
def activate_signer():
    """
    @notice Owner only, once the pending proposal's time has come: the proposed signer
        replaces the current one; authorizations signed by the old signer stop working.
    """
    assert msg.sender == self.owner, "not owner"
    new_signer: address = self.pending_signer
    assert new_signer != empty(address), "no pending signer"
    assert block.timestamp >= self.pending_signer_at, "delay not passed"
    previous: address = self.signer
    self.signer = new_signer
    self.pending_signer = empty(address)
    self.pending_signer_at = 0
    log SignerChanged(previous=previous, signer=new_signer)


@external
@nonreentrant
def transfer_ownership(new_owner: address):
    """
    @notice Owner only: hands the owner's role (signer rotation) to `new_owner`.
    """
    assert msg.sender == self.owner, "not owner"
    assert new_owner != empty(address), "zero owner"
    previous: address = self.owner
    self.owner = new_owner
    log OwnershipTransferred(previous=previous, owner=new_owner)


@external
@view
def reserves(token: address) -> uint256:
    """
    @notice The vault's own balance of `token` (the zero address for ETH), base units.
    """
    if token == empty(address):
        return self.balance
    return staticcall IERC20(token).balanceOf(self)
