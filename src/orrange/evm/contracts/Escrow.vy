# pragma version ~=0.4.3
"""
@title Orrange P2P escrow
@notice Holds a seller's ETH or ERC-20 for one trade until the buyer has paid off-chain.
    Per trade id (bytes32): the seller funds (buyer, token, amount, payment deadline); the
    buyer marks paid before the deadline; the seller releases to the buyer; after the paid
    mark either party may open a dispute, which the mediator resolves by giving the buyer
    `buyer_bps` basis points of the amount (10000 = release, 0 = refund, else a split); if
    the buyer never marked paid, the seller reclaims after the deadline.
    Fee: `fee_bps` (fixed per deal at funding) of what goes to the buyer, rounded down, is
    paid to `fee_recipient`. Nothing is charged on what goes back to the seller.
    Every state-changing function is `@nonreentrant`, and writes its state before any
    external call (checks-effects-interactions).
"""

from ethereum.ercs import IERC20

MAX_FEE_BPS: constant(uint256) = 1000
BPS: constant(uint256) = 10000

# Deal states.
EMPTY: constant(uint8) = 0
FUNDED: constant(uint8) = 1
PAID: constant(uint8) = 2
DISPUTED: constant(uint8) = 3
RELEASED: constant(uint8) = 4
RESOLVED: constant(uint8) = 5
RECLAIMED: constant(uint8) = 6


struct Deal:
    seller: address
    buyer: address
    token: address
    amount: uint256
    fee_bps: uint256
    payment_deadline: uint256
    state: uint8


event Funded:
    trade_id: indexed(bytes32)
    seller: indexed(address)
    buyer: indexed(address)
    token: address
    amount: uint256
    fee_bps: uint256
    payment_deadline: uint256


event MarkedPaid:
    trade_id: indexed(bytes32)
    buyer: indexed(address)


event Released:
    trade_id: indexed(bytes32)
    buyer: indexed(address)
    to_buyer: uint256
    fee: uint256


event Disputed:
    trade_id: indexed(bytes32)
    by: indexed(address)


event Resolved:
    trade_id: indexed(bytes32)
    buyer_bps: uint256
    to_buyer: uint256
    to_seller: uint256
    fee: uint256


event Reclaimed:
    trade_id: indexed(bytes32)
    seller: indexed(address)
    amount: uint256


event ConfigChanged:
    mediator: address
    fee_recipient: address
    fee_bps: uint256


owner: public(address)
mediator: public(address)
fee_recipient: public(address)
fee_bps: public(uint256)
deals: public(HashMap[bytes32, Deal])


@deploy
def __init__(mediator: address, fee_recipient: address, fee_bps: uint256):
    assert mediator != empty(address), "zero mediator"
    assert fee_recipient != empty(address), "zero fee recipient"
    assert fee_bps <= MAX_FEE_BPS, "fee too high"
    self.owner = msg.sender
    self.mediator = mediator
    self.fee_recipient = fee_recipient
    self.fee_bps = fee_bps
    log ConfigChanged(mediator=mediator, fee_recipient=fee_recipient, fee_bps=fee_bps)


@external
def set_config(mediator: address, fee_recipient: address, fee_bps: uint256):
    """
    @notice Owner only. Changes the mediator, fee recipient and fee for deals funded later.
    """
    assert msg.sender == self.owner, "not owner"
    assert mediator != empty(address), "zero mediator"
    assert fee_recipient != empty(address), "zero fee recipient"
    assert fee_bps <= MAX_FEE_BPS, "fee too high"
    self.mediator = mediator
    self.fee_recipient = fee_recipient
    self.fee_bps = fee_bps
    log ConfigChanged(mediator=mediator, fee_recipient=fee_recipient, fee_bps=fee_bps)


@internal
def _pay(token: address, to: address, amount: uint256):
    if amount == 0:
        return
    if token == empty(address):
        raw_call(to, b"", value=amount)
    else:
        assert extcall IERC20(token).transfer(to, amount, default_return_value=True), "transfer failed"


@external
@payable
@nonreentrant
def fund(
    trade_id: bytes32,
    buyer: address,
    token: address,
    amount: uint256,
    payment_deadline: uint256,
):
    """
    @notice Seller (msg.sender) locks `amount` for `buyer`. ETH when `token` is the zero
        address (msg.value must equal `amount`), else an ERC-20 pulled with transferFrom
        (approve first; msg.value must be 0). `payment_deadline` is a unix time in seconds.
    """
    assert self.deals[trade_id].state == EMPTY, "trade id used"
    assert buyer != empty(address), "zero buyer"
    assert buyer != msg.sender, "buyer is seller"
    assert amount > 0, "zero amount"
    assert payment_deadline > block.timestamp, "deadline passed"
    if token == empty(address):
        assert msg.value == amount, "wrong value"
    else:
        assert msg.value == 0, "value with token"
    fee_bps: uint256 = self.fee_bps
    self.deals[trade_id] = Deal(
        seller=msg.sender,
        buyer=buyer,
        token=token,
        amount=amount,
        fee_bps=fee_bps,
        payment_deadline=payment_deadline,
        state=FUNDED,
    )
    log Funded(
        trade_id=trade_id,
        seller=msg.sender,
        buyer=buyer,
        token=token,
        amount=amount,
        fee_bps=fee_bps,
        payment_deadline=payment_deadline,
    )
    if token != empty(address):
        before: uint256 = staticcall IERC20(token).balanceOf(self)
        assert extcall IERC20(token).transferFrom(
            msg.sender, self, amount, default_return_value=True
        ), "transferFrom failed"
        assert staticcall IERC20(token).balanceOf(self) == before + amount, "short transfer"


@external
@nonreentrant
def mark_paid(trade_id: bytes32):
    """
    @notice Buyer only, on a funded deal, no later than its payment deadline.
    """
    deal: Deal = self.deals[trade_id]
    assert deal.state == FUNDED, "not funded"
    assert msg.sender == deal.buyer, "not buyer"
    assert block.timestamp <= deal.payment_deadline, "deadline passed"
    self.deals[trade_id].state = PAID
    log MarkedPaid(trade_id=trade_id, buyer=msg.sender)


@external
@nonreentrant
def release(trade_id: bytes32):
    """
    @notice Seller only, on a funded or paid deal: the amount less the fee goes to the buyer.
    """
    deal: Deal = self.deals[trade_id]
    assert deal.state == FUNDED or deal.state == PAID, "not releasable"
    assert msg.sender == deal.seller, "not seller"
    fee: uint256 = deal.amount * deal.fee_bps // BPS
    to_buyer: uint256 = deal.amount - fee
    self.deals[trade_id].state = RELEASED
    log Released(trade_id=trade_id, buyer=deal.buyer, to_buyer=to_buyer, fee=fee)
    self._pay(deal.token, deal.buyer, to_buyer)
    self._pay(deal.token, self.fee_recipient, fee)


@external
@nonreentrant
def dispute(trade_id: bytes32):
    """
    @notice Buyer or seller, once the buyer has marked paid.
    """
    deal: Deal = self.deals[trade_id]
    assert deal.state == PAID, "not paid"
    assert msg.sender == deal.buyer or msg.sender == deal.seller, "not a party"
    self.deals[trade_id].state = DISPUTED
    log Disputed(trade_id=trade_id, by=msg.sender)


@external
@nonreentrant
def resolve(trade_id: bytes32, buyer_bps: uint256):
    """
    @notice Mediator only, on a disputed deal. The buyer's share is
        amount * buyer_bps // 10000, of which the fee (share * fee_bps // 10000) goes to
        the fee recipient; the seller gets amount - share. 10000 = release, 0 = refund.
    """
    deal: Deal = self.deals[trade_id]
    assert deal.state == DISPUTED, "not disputed"
    assert msg.sender == self.mediator, "not mediator"
    assert buyer_bps <= BPS, "bps > 10000"
    share: uint256 = deal.amount * buyer_bps // BPS
    fee: uint256 = share * deal.fee_bps // BPS
    to_buyer: uint256 = share - fee
    to_seller: uint256 = deal.amount - share
    self.deals[trade_id].state = RESOLVED
    log Resolved(
        trade_id=trade_id, buyer_bps=buyer_bps, to_buyer=to_buyer, to_seller=to_seller, fee=fee
    )
    self._pay(deal.token, deal.buyer, to_buyer)
    self._pay(deal.token, deal.seller, to_seller)
    self._pay(deal.token, self.fee_recipient, fee)


@external
@nonreentrant
def reclaim(trade_id: bytes32):
    """
    @notice Seller only, on a funded deal the buyer never marked paid, after its payment
        deadline: the whole amount goes back to the seller, no fee.
    """
    deal: Deal = self.deals[trade_id]
    assert deal.state == FUNDED, "not funded"
    assert msg.sender == deal.seller, "not seller"
    assert block.timestamp > deal.payment_deadline, "deadline not passed"
    self.deals[trade_id].state = RECLAIMED
    log Reclaimed(trade_id=trade_id, seller=msg.sender, amount=deal.amount)
    self._pay(deal.token, deal.seller, deal.amount)
