"""The flow state machine as data, and a pure transition function (architecture.md, "The flow").

Flow workers (claim a flow under a lease, run its stages):
    RECEIVED → IDENTIFIED → TRANSFORMED → VALIDATED
Then one transaction (the route stage) decides everything the sender is told, enqueues the sender's
acknowledgement in the outbox, and ends the flow workers' part:
    VALIDATED --route--------> ROUTED        at least one invoice routed: its delivery rows are enqueued
    VALIDATED --acknowledge--> ACKNOWLEDGED  (terminal) at least one invoice accepted and routing off (the
                                             directory is empty: validate and answer only)
    VALIDATED --reject-------> REJECTED      (terminal) no invoice accepted, or none routed (routing
                                             rejections make a batch partial: IN_INTEGRE_PARTIEL)
The sender's ack never waits for a recipient: it is enqueued at the same commit as ROUTED.
Delivery workers (the outbox; a flow in these states is never claimed by flow workers):
    ROUTED --deliver--------> DELIVERED     (terminal) the last delivery row of the flow was sent
    ROUTED --undeliverable--> UNDELIVERED   a delivery row went dead: the flow waits for an operator
    UNDELIVERED --resend----> ROUTED        `gateway resend INVOICE_ID` (a new attempt, same name)
Any progress state may go to REJECTED (terminal) or FAILED (retry with backoff); FAILED resumes at
the checkpoint it failed from; a flow that failed or crashed a worker too often is QUARANTINED.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FlowState(StrEnum):
    RECEIVED = "RECEIVED"
    IDENTIFIED = "IDENTIFIED"
    TRANSFORMED = "TRANSFORMED"
    VALIDATED = "VALIDATED"
    ROUTED = "ROUTED"
    DELIVERED = "DELIVERED"
    UNDELIVERED = "UNDELIVERED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    QUARANTINED = "QUARANTINED"


class Event(StrEnum):
    IDENTIFY = "identify"
    TRANSFORM = "transform"
    VALIDATE = "validate"
    ROUTE = "route"
    DELIVER = "deliver"
    ACKNOWLEDGE = "acknowledge"
    REJECT = "reject"
    FAIL = "fail"  # transient error: retry later from the same checkpoint
    RETRY = "retry"  # backoff elapsed: back to the checkpoint
    QUARANTINE = "quarantine"  # too many failures or worker crashes
    REPLAY = "replay"  # operator: start the flow again from RECEIVED
    UNDELIVERABLE = "undeliverable"  # a delivery row of the flow went dead
    RESEND = "resend"  # operator: deliver again (a new attempt under the same name)


PROGRESS_STATES: frozenset[FlowState] = frozenset(
    {
        FlowState.RECEIVED,
        FlowState.IDENTIFIED,
        FlowState.TRANSFORMED,
        FlowState.VALIDATED,
    }
)
# Waiting on the outbox: moved by delivery workers (and the operator), never claimed by flow workers.
DELIVERY_STATES: frozenset[FlowState] = frozenset({FlowState.ROUTED, FlowState.UNDELIVERED})
TERMINAL_STATES: frozenset[FlowState] = frozenset(
    {FlowState.ACKNOWLEDGED, FlowState.REJECTED, FlowState.DELIVERED}
)
# States a flow worker picks up (FAILED flows only once their backoff has elapsed).
WORKABLE_STATES: frozenset[FlowState] = PROGRESS_STATES | {FlowState.FAILED}

_FORWARD: dict[tuple[FlowState, Event], FlowState] = {
    (FlowState.RECEIVED, Event.IDENTIFY): FlowState.IDENTIFIED,
    (FlowState.IDENTIFIED, Event.TRANSFORM): FlowState.TRANSFORMED,
    (FlowState.TRANSFORMED, Event.VALIDATE): FlowState.VALIDATED,
    (FlowState.VALIDATED, Event.ROUTE): FlowState.ROUTED,
    (FlowState.VALIDATED, Event.ACKNOWLEDGE): FlowState.ACKNOWLEDGED,
    (FlowState.ROUTED, Event.DELIVER): FlowState.DELIVERED,
    (FlowState.ROUTED, Event.UNDELIVERABLE): FlowState.UNDELIVERED,
    (FlowState.UNDELIVERED, Event.RESEND): FlowState.ROUTED,
}


def _build_table() -> dict[tuple[FlowState, Event], FlowState]:
    table = dict(_FORWARD)
    for state in PROGRESS_STATES:
        table[(state, Event.REJECT)] = FlowState.REJECTED
        table[(state, Event.FAIL)] = FlowState.FAILED
        table[(state, Event.QUARANTINE)] = FlowState.QUARANTINED
    table[(FlowState.FAILED, Event.FAIL)] = FlowState.FAILED
    table[(FlowState.FAILED, Event.QUARANTINE)] = FlowState.QUARANTINED
    table[(FlowState.FAILED, Event.REJECT)] = FlowState.REJECTED
    table[(FlowState.QUARANTINED, Event.REPLAY)] = FlowState.RECEIVED
    table[(FlowState.QUARANTINED, Event.REJECT)] = FlowState.REJECTED
    return table


TRANSITIONS: dict[tuple[FlowState, Event], FlowState] = _build_table()


class InvalidTransition(ValueError):
    pass


@dataclass(frozen=True)
class Position:
    """Where a flow stands: its state and, when FAILED, the checkpoint it resumes from."""

    state: FlowState
    checkpoint: FlowState | None = None

    def __post_init__(self) -> None:
        failed = self.state is FlowState.FAILED
        if failed != (self.checkpoint is not None) or (failed and self.checkpoint not in PROGRESS_STATES):
            raise ValueError(f"a FAILED flow, and only it, has a progress-state checkpoint: {self}")


def transition(position: Position, event: Event) -> Position:
    """Pure: the position after `event`, or InvalidTransition."""
    if event is Event.RETRY:
        if position.state is not FlowState.FAILED or position.checkpoint is None:
            raise InvalidTransition(f"cannot retry from {position.state}")
        return Position(position.checkpoint)
    target = TRANSITIONS.get((position.state, event))
    if target is None:
        raise InvalidTransition(f"no transition from {position.state} on {event}")
    if target is FlowState.FAILED:
        checkpoint = position.checkpoint if position.state is FlowState.FAILED else position.state
        return Position(FlowState.FAILED, checkpoint)
    return Position(target)


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff: base, 2·base, 4·base … capped."""
    return float(min(cap, base * (2 ** min(max(0, attempts - 1), 60))))  # bounded exponent: no overflow
