#pragma version ~=0.4.3
"""
@title Mercato OperatorRegistry
@notice Who the operators are, where they answer, which keys sign their receipts and
        what they sell at which price. Every state change logs an event so a router can
        rebuild the registry from logs alone.
        - Operators register with a stake (>= min_stake, pulled with transferFrom), a
          unique slug, an endpoint, 1-4 signer addresses and an attestation kind.
        - Services (model offers) are grouped under owner-created blueprints.
        - Unstaking: request_unstake() makes the operator inactive at once; after
          unstake_delay, withdraw_stake() returns the (possibly slashed) stake,
          deregisters the operator, frees its slug and deactivates its services.
        - The arbiter may slash any registered operator (also while unstaking); slashed
          tokens are sent to the arbiter.
        Compile: see contracts/README.md.
"""

from ethereum.ercs import IERC20

from snekmate.auth import ownable

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership, ownable.renounce_ownership)


MAX_SIGNERS: constant(uint256) = 4
MAX_SERVICES_PER_OPERATOR: constant(uint256) = 64

# Operator.status
STATUS_NONE: constant(uint8) = 0
STATUS_ACTIVE: constant(uint8) = 1
STATUS_PAUSED: constant(uint8) = 2
STATUS_UNSTAKING: constant(uint8) = 3

# Service.flags bits (others reserved)
FLAG_TEE: constant(uint256) = 1
FLAG_ZERO_DATA_RETENTION: constant(uint256) = 2
FLAG_NO_TRAINING: constant(uint256) = 4


struct Operator:
    slug: String[64]
    endpoint: String[256]
    attestation_kind: String[16]
    stake: uint256
    status: uint8
    registered_at: uint256
    last_heartbeat: uint256
    unstake_available_at: uint256


struct Service:
    operator: address
    blueprint_id: uint256
    model: String[128]
    price_in_per_m: uint256
    price_out_per_m: uint256
    max_context: uint256
    flags: uint256
    active: bool


struct Blueprint:
    name: String[64]
    kind: String[32]


event BlueprintCreated:
    blueprint_id: indexed(uint256)
    name: String[64]
    kind: String[32]

event OperatorRegistered:
    operator: indexed(address)
    slug: String[64]
    endpoint: String[256]
    signers: DynArray[address, MAX_SIGNERS]
    attestation_kind: String[16]
    stake: uint256

event ServiceAdded:
    service_id: indexed(uint256)
    operator: indexed(address)
    blueprint_id: indexed(uint256)
    model: String[128]
    price_in_per_m: uint256
    price_out_per_m: uint256
    max_context: uint256
    flags: uint256

event ServiceUpdated:
    service_id: indexed(uint256)
    price_in_per_m: uint256
    price_out_per_m: uint256
    max_context: uint256
    flags: uint256

event ServiceActiveSet:
    service_id: indexed(uint256)
    active: bool

event EndpointUpdated:
    operator: indexed(address)
    endpoint: String[256]

event SignersUpdated:
    operator: indexed(address)
    signers: DynArray[address, MAX_SIGNERS]

event AttestationKindUpdated:
    operator: indexed(address)
    kind: String[16]

event OperatorPaused:
    operator: indexed(address)

event OperatorResumed:
    operator: indexed(address)

event Heartbeat:
    operator: indexed(address)
    timestamp: uint256

event StakeAdded:
    operator: indexed(address)
    amount: uint256
    total: uint256

event UnstakeRequested:
    operator: indexed(address)
    available_at: uint256

event StakeWithdrawn:
    operator: indexed(address)
    amount: uint256

event Slashed:
    operator: indexed(address)
    amount: uint256
    reason: String[128]

event ArbiterSet:
    arbiter: indexed(address)


token: public(immutable(address))
min_stake: public(immutable(uint256))
unstake_delay: public(immutable(uint256))
arbiter: public(address)

operators: public(HashMap[address, Operator])
_signers: HashMap[address, DynArray[address, MAX_SIGNERS]]
_slug_owner: HashMap[bytes32, address]
services: public(HashMap[uint256, Service])
service_count: public(uint256)
blueprints: public(HashMap[uint256, Blueprint])
blueprint_count: public(uint256)
_operator_services: HashMap[address, DynArray[uint256, MAX_SERVICES_PER_OPERATOR]]


@deploy
def __init__(token_: address, min_stake_: uint256, unstake_delay_: uint256, arbiter_: address):
    assert token_ != empty(address), "registry: zero token"
    ownable.__init__()
    token = token_
    min_stake = min_stake_
    unstake_delay = unstake_delay_
    self.arbiter = arbiter_
    log ArbiterSet(arbiter=arbiter_)


# --- views ---------------------------------------------------------------------------

@external
@view
def operator_signers(operator: address) -> DynArray[address, MAX_SIGNERS]:
    return self._signers[operator]


@external
@view
def slug_owner(slug: String[64]) -> address:
    return self._slug_owner[keccak256(slug)]


@external
@view
def is_signer(operator: address, signer: address) -> bool:
    if self.operators[operator].status == STATUS_NONE:
        return False
    return signer in self._signers[operator]


@external
@view
def operator_services(operator: address) -> DynArray[uint256, MAX_SERVICES_PER_OPERATOR]:
    """
    @notice Ids of the services added by the operator's current registration.
    """
    return self._operator_services[operator]


# --- owner / arbiter -----------------------------------------------------------------

@external
def create_blueprint(name: String[64], kind: String[32]) -> uint256:
    ownable._check_owner()
    assert len(name) > 0, "registry: empty name"
    assert len(kind) > 0, "registry: empty kind"
    blueprint_id: uint256 = self.blueprint_count + 1
    self.blueprint_count = blueprint_id
    self.blueprints[blueprint_id] = Blueprint(name=name, kind=kind)
    log BlueprintCreated(blueprint_id=blueprint_id, name=name, kind=kind)
    return blueprint_id


@external
def set_arbiter(arbiter_: address):
    ownable._check_owner()
    self.arbiter = arbiter_
    log ArbiterSet(arbiter=arbiter_)


@external
def slash(operator: address, amount: uint256, reason: String[128]):
    assert msg.sender == self.arbiter, "registry: caller is not the arbiter"
    assert self.operators[operator].status != STATUS_NONE, "registry: not registered"
    assert amount > 0, "registry: zero amount"
    stake: uint256 = self.operators[operator].stake
    assert amount <= stake, "registry: amount exceeds stake"
    self.operators[operator].stake = stake - amount
    log Slashed(operator=operator, amount=amount, reason=reason)
    assert extcall IERC20(token).transfer(msg.sender, amount, default_return_value=True)


# --- registration --------------------------------------------------------------------

@internal
@view
def _check_signers(signers: DynArray[address, MAX_SIGNERS]):
    assert len(signers) > 0, "registry: no signers"
    for i: uint256 in range(len(signers), bound=MAX_SIGNERS):
        assert signers[i] != empty(address), "registry: zero signer"
        for j: uint256 in range(i, bound=MAX_SIGNERS):
            assert signers[j] != signers[i], "registry: duplicate signer"


@internal
@view
def _registered() -> Operator:
    op: Operator = self.operators[msg.sender]
    assert op.status != STATUS_NONE, "registry: not registered"
    return op


@internal
@view
def _not_unstaking() -> Operator:
    op: Operator = self._registered()
    assert op.status != STATUS_UNSTAKING, "registry: unstaking"
    return op


@external
def register(
    slug: String[64],
    endpoint: String[256],
    signers: DynArray[address, MAX_SIGNERS],
    attestation_kind: String[16],
    stake: uint256,
):
    assert self.operators[msg.sender].status == STATUS_NONE, "registry: already registered"
    assert len(slug) > 0, "registry: empty slug"
    assert len(endpoint) > 0, "registry: empty endpoint"
    assert len(attestation_kind) > 0, "registry: empty attestation kind"
    self._check_signers(signers)
    assert stake >= min_stake, "registry: stake below minimum"
    slug_hash: bytes32 = keccak256(slug)
    assert self._slug_owner[slug_hash] == empty(address), "registry: slug taken"

    self._slug_owner[slug_hash] = msg.sender
    self._signers[msg.sender] = signers
    self.operators[msg.sender] = Operator(
        slug=slug,
        endpoint=endpoint,
        attestation_kind=attestation_kind,
        stake=stake,
        status=STATUS_ACTIVE,
        registered_at=block.timestamp,
        last_heartbeat=block.timestamp,
        unstake_available_at=0,
    )
    log OperatorRegistered(
        operator=msg.sender,
        slug=slug,
        endpoint=endpoint,
        signers=signers,
        attestation_kind=attestation_kind,
        stake=stake,
    )
    assert extcall IERC20(token).transferFrom(msg.sender, self, stake, default_return_value=True)


@external
def update_endpoint(endpoint: String[256]):
    self._not_unstaking()
    assert len(endpoint) > 0, "registry: empty endpoint"
    self.operators[msg.sender].endpoint = endpoint
    log EndpointUpdated(operator=msg.sender, endpoint=endpoint)


@external
def set_signers(signers: DynArray[address, MAX_SIGNERS]):
    self._not_unstaking()
    self._check_signers(signers)
    self._signers[msg.sender] = signers
    log SignersUpdated(operator=msg.sender, signers=signers)


@external
def set_attestation_kind(kind: String[16]):
    self._not_unstaking()
    assert len(kind) > 0, "registry: empty attestation kind"
    self.operators[msg.sender].attestation_kind = kind
    log AttestationKindUpdated(operator=msg.sender, kind=kind)


@external
def pause():
    op: Operator = self._registered()
    assert op.status == STATUS_ACTIVE, "registry: not active"
    self.operators[msg.sender].status = STATUS_PAUSED
    log OperatorPaused(operator=msg.sender)


@external
def resume():
    op: Operator = self._registered()
    assert op.status == STATUS_PAUSED, "registry: not paused"
    assert op.stake >= min_stake, "registry: stake below minimum"
    self.operators[msg.sender].status = STATUS_ACTIVE
    log OperatorResumed(operator=msg.sender)


@external
def heartbeat():
    self._not_unstaking()
    self.operators[msg.sender].last_heartbeat = block.timestamp
    log Heartbeat(operator=msg.sender, timestamp=block.timestamp)


# --- stake ---------------------------------------------------------------------------

@external
def add_stake(amount: uint256):
    op: Operator = self._not_unstaking()
    assert amount > 0, "registry: zero amount"
    total: uint256 = op.stake + amount
    self.operators[msg.sender].stake = total
    log StakeAdded(operator=msg.sender, amount=amount, total=total)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount, default_return_value=True)


@external
def request_unstake():
    self._not_unstaking()
    available_at: uint256 = block.timestamp + unstake_delay
    self.operators[msg.sender].status = STATUS_UNSTAKING
    self.operators[msg.sender].unstake_available_at = available_at
    log UnstakeRequested(operator=msg.sender, available_at=available_at)


@external
def withdraw_stake():
    op: Operator = self._registered()
    assert op.status == STATUS_UNSTAKING, "registry: unstake not requested"
    assert block.timestamp >= op.unstake_available_at, "registry: unstake delay running"
    for service_id: uint256 in self._operator_services[msg.sender]:
        if self.services[service_id].active:
            self.services[service_id].active = False
            log ServiceActiveSet(service_id=service_id, active=False)
    self._operator_services[msg.sender] = empty(DynArray[uint256, MAX_SERVICES_PER_OPERATOR])
    self._slug_owner[keccak256(op.slug)] = empty(address)
    self._signers[msg.sender] = empty(DynArray[address, MAX_SIGNERS])
    self.operators[msg.sender] = empty(Operator)
    log StakeWithdrawn(operator=msg.sender, amount=op.stake)
    if op.stake > 0:
        assert extcall IERC20(token).transfer(msg.sender, op.stake, default_return_value=True)


# --- services ------------------------------------------------------------------------

@external
def add_service(
    blueprint_id: uint256,
    model: String[128],
    price_in_per_m: uint256,
    price_out_per_m: uint256,
    max_context: uint256,
    flags: uint256,
) -> uint256:
    self._not_unstaking()
    assert blueprint_id >= 1 and blueprint_id <= self.blueprint_count, "registry: unknown blueprint"
    assert len(model) > 0, "registry: empty model"
    assert max_context > 0, "registry: zero max context"
    assert len(self._operator_services[msg.sender]) < MAX_SERVICES_PER_OPERATOR, "registry: too many services"
    service_id: uint256 = self.service_count + 1
    self.service_count = service_id
    self.services[service_id] = Service(
        operator=msg.sender,
        blueprint_id=blueprint_id,
        model=model,
        price_in_per_m=price_in_per_m,
        price_out_per_m=price_out_per_m,
        max_context=max_context,
        flags=flags,
        active=True,
    )
    self._operator_services[msg.sender].append(service_id)
    log ServiceAdded(
        service_id=service_id,
        operator=msg.sender,
        blueprint_id=blueprint_id,
        model=model,
        price_in_per_m=price_in_per_m,
        price_out_per_m=price_out_per_m,
        max_context=max_context,
        flags=flags,
    )
    return service_id


@internal
@view
def _check_service_owner(service_id: uint256):
    assert self.services[service_id].operator == msg.sender, "registry: not the service operator"
    assert service_id in self._operator_services[msg.sender], "registry: service of an old registration"


@external
def update_service(
    service_id: uint256, price_in_per_m: uint256, price_out_per_m: uint256, max_context: uint256, flags: uint256
):
    self._not_unstaking()
    self._check_service_owner(service_id)
    assert max_context > 0, "registry: zero max context"
    self.services[service_id].price_in_per_m = price_in_per_m
    self.services[service_id].price_out_per_m = price_out_per_m
    self.services[service_id].max_context = max_context
    self.services[service_id].flags = flags
    log ServiceUpdated(
        service_id=service_id,
        price_in_per_m=price_in_per_m,
        price_out_per_m=price_out_per_m,
        max_context=max_context,
        flags=flags,
    )


@external
def set_service_active(service_id: uint256, active: bool):
    self._not_unstaking()
    self._check_service_owner(service_id)
    self.services[service_id].active = active
    log ServiceActiveSet(service_id=service_id, active=active)
