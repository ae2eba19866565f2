# pragma version ~=0.4.3
# Test-only ERC-20 that burns 1 % of every transferFrom (a fee-on-transfer token): the vault
# must refuse deposits of it.

balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__():
    self.balanceOf[msg.sender] = 10**30


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    return True


@external
def transfer(to: address, amount: uint256) -> bool:
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[to] += amount
    return True


@external
def transferFrom(sender: address, to: address, amount: uint256) -> bool:
    fee: uint256 = amount // 100
    self.allowance[sender][msg.sender] -= amount
    self.balanceOf[sender] -= amount
    self.balanceOf[to] += amount - fee
    return True
