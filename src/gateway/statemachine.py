"""The flow state machine as data, and a pure transition function (architecture.md, "The flow").

RECEIVED → IDENTIFIED → TRANSFORMED → VALIDATED → ROUTED → DELIVERED → ACKNOWLEDGED (terminal)
Until routing and delivery exist, VALIDATED → ACKNOWLEDGED is the "no routing configured" path.
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


PROGRESS_STATES: frozenset[FlowState] = frozenset(
    {
        FlowState.RECEIVED,
        FlowState.IDENTIFIED,
        FlowState.TRANSFORMED,
        FlowState.VALIDATED,
        FlowState.ROUTED,
        FlowState.DELIVERED,
    }
)
TERMINAL_STATES: frozenset[FlowState] = frozenset({FlowState.ACKNOWLEDGED, FlowState.REJECTED})
# States a worker picks up (FAILED flows only once their backoff has elapsed).
WORKABLE_STATES: frozenset[FlowState] = PROGRESS_STATES | {FlowState.FAILED}

_FORWARD: dict[tuple[FlowState, Event], FlowState] = {
    (FlowState.RECEIVED, Event.IDENTIFY): FlowState.IDENTIFIED,
    (FlowState.IDENTIFIED, Event.TRANSFORM): FlowState.TRANSFORMED,
    (FlowState.TRANSFORMED, Event.VALIDATE): FlowState.VALIDATED,
    (FlowState.VALIDATED, Event.ROUTE): FlowState.ROUTED,
    (FlowState.ROUTED, Event.DELIVER): FlowState.DELIVERED,
    (FlowState.DELIVERED, Event.ACKNOWLEDGE): FlowState.ACKNOWLEDGED,
    (FlowState.VALIDATED, Event.ACKNOWLEDGE): FlowState.ACKNOWLEDGED,
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
    return float(min(cap, base * (2 ** max(0, attempts - 1))))
