# pragma version ~=0.4.3
event Set:
    who: indexed(address)
    value: uint256
    note: String[32]

value: public(uint256)
owner: public(address)

@deploy
def __init__(start: uint256):
    self.value = start
    self.owner = msg.sender

@external
def set(v: uint256, note: String[32]):
    assert v != 13, "unlucky"
    self.value = v
    log Set(who=msg.sender, value=v, note=note)
