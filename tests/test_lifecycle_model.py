"""The invoice lifecycle as data and its pure transition() (issue 18), with Hypothesis on whole cycles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.transforms.lifecycle import (
    ALL_REASONS,
    CONCENTRATOR_STATUSES,
    LC_ACCESS_DENIED,
    LC_INVALID_STATUS,
    LC_RULE_ERROR,
    LC_STATUS_ERROR,
    NEXT,
    STATUSES,
    Actor,
    label,
    transition,
)

# issue 18 / chorus-reference.md §3.2: the statuses the gateway handles and their French labels
EXPECTED_LABELS = {
    "200": "Déposée",
    "213": "Rejetée",
    "203": "Mise à disposition",
    "204": "Prise en charge",
    "205": "Approuvée",
    "206": "Approuvée partiellement",
    "207": "En litige",
    "208": "Suspendue",
    "209": "Complétée",
    "210": "Refusée",
    "211": "Paiement transmis",
    "212": "Encaissée",
    "220": "Annulée",
    "221": "Erreur de routage",
    "501": "Irrecevable",
}


def test_labels_and_table_shape() -> None:
    for code, fr in EXPECTED_LABELS.items():
        assert label(code) == fr and label(code, "en") and STATUSES[code].label_en
    assert {"200", "210", "212", "213"} == CONCENTRATOR_STATUSES
    assert set(NEXT) - {None} == set(STATUSES)  # every status has its row of next statuses
    for current, nexts in NEXT.items():
        assert nexts <= set(STATUSES), current
    for status in STATUSES.values():
        assert status.actors and status.allowed_reasons() <= ALL_REASONS
    assert {c for c, s in STATUSES.items() if s.reason_required} == {"206", "207", "208", "210", "213", "501"}
    assert {c for c, s in STATUSES.items() if s.terminal} == {"210", "212", "213", "220", "501"}


@pytest.mark.parametrize(
    ("current", "code", "actor", "reason", "refusal"),
    [
        (None, "200", Actor.PLATFORM, None, None),
        ("200", "203", Actor.PLATFORM, None, None),
        ("203", "204", Actor.RECIPIENT, None, None),
        ("204", "205", Actor.RECIPIENT, None, None),
        ("205", "211", Actor.RECIPIENT, None, None),
        ("211", "212", Actor.RECIPIENT, None, None),
        ("211", "212", Actor.ISSUER, None, None),
        ("203", "210", Actor.RECIPIENT, "TX_TVA_ERR", None),
        ("200", "212", Actor.RECIPIENT, None, LC_STATUS_ERROR),  # 212 not before 203
        (None, "204", Actor.RECIPIENT, None, LC_STATUS_ERROR),  # no status yet
        ("213", "203", Actor.PLATFORM, None, LC_STATUS_ERROR),  # nothing after 213
        ("210", "205", Actor.RECIPIENT, None, LC_STATUS_ERROR),  # nothing after 210
        ("210", "212", Actor.ISSUER, None, LC_STATUS_ERROR),
        ("203", "210", Actor.RECIPIENT, None, LC_RULE_ERROR),  # a refusal needs its reason
        ("203", "210", Actor.RECIPIENT, "REJ_SEMAN", LC_RULE_ERROR),  # a platform reason, not a buyer's
        ("203", "210", Actor.RECIPIENT, "NOPE", LC_RULE_ERROR),  # not in the closed list
        ("203", "210", Actor.RECIPIENT, "RETRAIT_MAN_SERV", LC_RULE_ERROR),  # B2G only
        ("200", "213", Actor.PLATFORM, "REJ_SEMAN", None),
        ("200", "221", Actor.PLATFORM, "ROUTAGE_ERR", None),
        ("200", "221", Actor.PLATFORM, "AUTRE", LC_RULE_ERROR),
        ("203", "205", Actor.ISSUER, None, LC_ACCESS_DENIED),  # the seller does not approve its invoice
        ("200", "203", Actor.RECIPIENT, None, LC_ACCESS_DENIED),  # transmission statuses are the platform's
        ("208", "209", Actor.ISSUER, None, None),
        ("203", "999", Actor.RECIPIENT, None, LC_INVALID_STATUS),
        ("203", "214", Actor.RECIPIENT, None, LC_INVALID_STATUS),
    ],
)
def test_transition_examples(
    current: str | None, code: str, actor: Actor, reason: str | None, refusal: str | None
) -> None:
    verdict = transition(current, code, actor, reason)
    assert verdict.refusal == refusal, verdict.message
    if refusal:
        assert verdict.message and not verdict.allowed


def test_b2g_refusal_reasons() -> None:
    assert transition("203", "210", Actor.RECIPIENT, "RETRAIT_MAN_SERV", b2g=True).allowed
    assert transition("203", "210", Actor.RECIPIENT, "TX_TVA_ERR", b2g=True).allowed
    assert not transition("203", "210", Actor.RECIPIENT, "REJ_SEMAN", b2g=True).allowed


def test_messages_name_the_problem() -> None:
    assert "final status" in transition("213", "204", Actor.RECIPIENT).message
    assert "203" in transition("200", "212", Actor.RECIPIENT).message
    assert "TX_TVA_ERR" in transition("203", "210", Actor.RECIPIENT, "REJ_SEMAN").message


codes = st.sampled_from(sorted(STATUSES) + ["214", "999"])
actors = st.sampled_from(list(Actor))
reasons = st.one_of(st.none(), st.sampled_from(sorted(ALL_REASONS) + ["BOGUS"]))
steps = st.lists(st.tuples(codes, actors, reasons), max_size=40)


@settings(max_examples=400, deadline=None)
@given(steps)
def test_any_sequence_only_keeps_legal_cycles(attempts: list[tuple[str, Actor, str | None]]) -> None:
    """Apply whatever is allowed: the kept history is always a legal cycle."""
    current: str | None = None
    history: list[str] = []
    for code, actor, reason in attempts:
        verdict = transition(current, code, actor, reason)
        if not verdict.allowed:
            assert verdict.refusal in (LC_INVALID_STATUS, LC_STATUS_ERROR, LC_RULE_ERROR, LC_ACCESS_DENIED)
            continue
        status = STATUSES[code]
        assert actor in status.actors
        assert reason is None or reason in status.allowed_reasons()
        assert reason is not None or not status.reason_required
        assert current is None or not STATUSES[current].terminal  # nothing after a final status
        history.append(code)
        current = code
    if history:
        assert history[0] in ("200", "213", "501")
    for i, code in enumerate(history):
        if code in ("204", "205", "206", "207", "208", "210", "211", "212"):
            assert "203" in history[:i]  # processing statuses only once the invoice was made available
        if code == "209":
            assert "208" in history[:i]  # completed after a suspension
    finals = [i for i, code in enumerate(history) if STATUSES[code].terminal]
    assert not finals or finals[0] == len(history) - 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(STATUSES)), st.sampled_from(sorted(STATUSES)), actors, reasons)
def test_transition_is_pure_and_total(current: str, code: str, actor: Actor, reason: str | None) -> None:
    first = transition(current, code, actor, reason)
    assert first == transition(current, code, actor, reason)
    assert first.allowed == (first.refusal is None)
