"""The flow state machine: table properties checked with Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.statemachine import (
    DELIVERY_STATES,
    PROGRESS_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Event,
    FlowState,
    InvalidTransition,
    Position,
    backoff_seconds,
    transition,
)

positions = st.one_of(
    st.builds(Position, st.sampled_from([s for s in FlowState if s is not FlowState.FAILED])),
    st.builds(Position, st.just(FlowState.FAILED), st.sampled_from(sorted(PROGRESS_STATES))),
)


def test_position_invariant() -> None:
    with pytest.raises(ValueError):
        Position(FlowState.FAILED)
    with pytest.raises(ValueError):
        Position(FlowState.RECEIVED, FlowState.RECEIVED)
    with pytest.raises(ValueError):
        Position(FlowState.FAILED, FlowState.ACKNOWLEDGED)


def test_happy_path_reaches_acknowledged() -> None:
    pos = Position(FlowState.RECEIVED)
    for event in (Event.IDENTIFY, Event.TRANSFORM, Event.VALIDATE, Event.ACKNOWLEDGE):
        pos = transition(pos, event)
    assert pos == Position(FlowState.ACKNOWLEDGED)


def test_full_path_with_routing_and_delivery() -> None:
    pos = Position(FlowState.RECEIVED)
    for event in (Event.IDENTIFY, Event.TRANSFORM, Event.VALIDATE, Event.ROUTE, Event.DELIVER):
        pos = transition(pos, event)
    assert pos.state is FlowState.DELIVERED and pos.state in TERMINAL_STATES


def test_dead_delivery_waits_for_an_operator_then_delivers() -> None:
    pos = transition(Position(FlowState.ROUTED), Event.UNDELIVERABLE)
    assert pos.state is FlowState.UNDELIVERED
    for event in (Event.DELIVER, Event.RETRY, Event.REPLAY, Event.FAIL, Event.ACKNOWLEDGE):
        with pytest.raises(InvalidTransition):
            transition(pos, event)
    pos = transition(pos, Event.RESEND)
    assert transition(pos, Event.DELIVER).state is FlowState.DELIVERED


@given(
    st.sampled_from(sorted(DELIVERY_STATES)), st.sampled_from([Event.FAIL, Event.QUARANTINE, Event.REJECT])
)
def test_delivery_states_are_not_flow_worker_states(state: FlowState, event: Event) -> None:
    # a flow waiting on its deliveries has told its sender everything: no failure, no second verdict
    with pytest.raises(InvalidTransition):
        transition(Position(state), event)


@given(positions, st.lists(st.sampled_from(list(Event)), max_size=30))
def test_once_routed_the_sender_verdict_is_final(start: Position, events: list[Event]) -> None:
    pos = start
    routed = pos.state in DELIVERY_STATES or pos.state is FlowState.DELIVERED
    for event in events:
        try:
            pos = transition(pos, event)
        except InvalidTransition:
            continue
        if routed:
            assert pos.state in DELIVERY_STATES | {FlowState.DELIVERED}
        routed = routed or pos.state is FlowState.ROUTED


@given(positions, st.sampled_from(list(Event)))
def test_terminal_states_never_move(pos: Position, event: Event) -> None:
    if pos.state in TERMINAL_STATES:
        with pytest.raises(InvalidTransition):
            transition(pos, event)


@given(st.sampled_from(sorted(PROGRESS_STATES)))
def test_every_progress_state_can_reject_fail_and_quarantine(state: FlowState) -> None:
    assert transition(Position(state), Event.REJECT).state is FlowState.REJECTED
    assert transition(Position(state), Event.QUARANTINE).state is FlowState.QUARANTINED
    failed = transition(Position(state), Event.FAIL)
    assert failed == Position(FlowState.FAILED, state)


@given(st.sampled_from(sorted(PROGRESS_STATES)), st.integers(min_value=0, max_value=5))
def test_failure_resumes_at_its_checkpoint(state: FlowState, extra_failures: int) -> None:
    pos = transition(Position(state), Event.FAIL)
    for _ in range(extra_failures):
        pos = transition(pos, Event.FAIL)  # failing again while FAILED keeps the checkpoint
    assert transition(pos, Event.RETRY) == Position(state)


@given(positions, st.lists(st.sampled_from(list(Event)), max_size=30))
def test_random_walks_only_visit_declared_transitions(start: Position, events: list[Event]) -> None:
    pos = start
    for event in events:
        try:
            nxt = transition(pos, event)
        except InvalidTransition:
            continue
        if event is Event.RETRY:
            assert pos.state is FlowState.FAILED and nxt.state is pos.checkpoint
        else:
            assert TRANSITIONS[(pos.state, event)] is nxt.state
        if nxt.state is FlowState.FAILED:
            assert nxt.checkpoint in PROGRESS_STATES
        pos = nxt


def test_retry_only_from_failed() -> None:
    with pytest.raises(InvalidTransition):
        transition(Position(FlowState.RECEIVED), Event.RETRY)


def test_quarantine_can_be_replayed() -> None:
    assert transition(Position(FlowState.QUARANTINED), Event.REPLAY).state is FlowState.RECEIVED


@given(st.integers(min_value=1, max_value=10**6))
def test_backoff_grows_and_is_capped(attempts: int) -> None:
    delay = backoff_seconds(attempts, 2.0, 300.0)
    assert 2.0 <= delay <= 300.0
    assert backoff_seconds(attempts + 1, 2.0, 300.0) >= delay
