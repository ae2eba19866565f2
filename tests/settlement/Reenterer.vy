# pragma version ~=0.4.3
# Test-only buyer that, when paid in ETH, tries to re-enter the escrow (dispute on another
# trade) and records whether the nested call succeeded.

interface IEscrow:
    def mark_paid(trade_id: bytes32): nonpayable
    def dispute(trade_id: bytes32): nonpayable

escrow: public(address)
target: public(bytes32)
attempts: public(uint256)
reentered: public(bool)


@deploy
def __init__(escrow: address):
    self.escrow = escrow


@external
def mark_paid(trade_id: bytes32):
    extcall IEscrow(self.escrow).mark_paid(trade_id)


@external
def dispute(trade_id: bytes32):
    extcall IEscrow(self.escrow).dispute(trade_id)


@external
def set_target(trade_id: bytes32):
    self.target = trade_id


@external
@payable
def __default__():
    self.attempts += 1
    self.reentered = raw_call(
        self.escrow,
        abi_encode(self.target, method_id=method_id("dispute(bytes32)")),
        revert_on_failure=False,
    )
