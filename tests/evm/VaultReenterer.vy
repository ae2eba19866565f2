# pragma version ~=0.4.3
# Test-only withdrawal recipient that, when paid in ETH, tries to re-enter the vault with a
# second signed withdrawal (to itself) and records whether the nested call succeeded.

vault: public(address)
payload: public(Bytes[1024])
attempts: public(uint256)
reentered: public(bool)


@deploy
def __init__(vault: address):
    self.vault = vault


@external
def set_payload(payload: Bytes[1024]):
    self.payload = payload


@external
@payable
def __default__():
    if len(self.payload) == 0:
        return
    self.attempts += 1
    self.reentered = raw_call(self.vault, self.payload, revert_on_failure=False)
