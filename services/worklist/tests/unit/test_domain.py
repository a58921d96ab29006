from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from radcommon.contracts import PriorityValues
from support.worklist import a_study
from worklist.domain.assignment import Reader, choose_reader
from worklist.domain.model import AlreadyClaimed, Deadline, IllegalTransition, NotYours, StatusValues, WorklistItem
from worklist.domain.priority import PriorityRule, priority_for
from worklist.domain.sla import SlaPolicy, deadline_for, default_policies, policy_for

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)
ALICE, BOB = uuid4(), uuid4()


def an_item(**study: object) -> WorklistItem:
    return WorklistItem.for_study(a_study(**study), PriorityValues.ROUTINE,  # type: ignore[arg-type]
                                  Deadline(NOW + timedelta(hours=24), NOW + timedelta(hours=18)))


def test_the_status_follows_the_report_from_claim_to_amendment() -> None:
    item = an_item()
    item.claim(ALICE, NOW, TTL)
    assert (item.status, item.assignee_id, item.claimed_by) == (StatusValues.IN_PROGRESS, ALICE, ALICE)
    assert item.report_submitted(ALICE, NOW)
    assert (item.status, item.claimed_by) == (StatusValues.PRELIMINARY, None)
    assert item.report_finalized(ALICE, NOW)
    assert (item.status, item.reported_by, item.finalized_at) == (StatusValues.FINAL, ALICE, NOW)
    assert item.addendum_added(NOW)
    assert item.status is StatusValues.AMENDED


@pytest.mark.parametrize("status", [StatusValues.PRELIMINARY, StatusValues.FINAL, StatusValues.AMENDED])
def test_a_reported_item_cannot_be_claimed_assigned_or_released(status: StatusValues) -> None:
    item = an_item()
    item.status = status
    with pytest.raises(IllegalTransition):
        item.claim(ALICE, NOW, TTL)
    with pytest.raises(IllegalTransition):
        item.assign(ALICE, NOW)
    with pytest.raises(IllegalTransition):
        item.release(NOW)


def test_an_addendum_needs_a_final_report_and_a_late_draft_changes_nothing() -> None:
    item = an_item()
    assert not item.addendum_added(NOW)
    item.report_finalized(ALICE, NOW)
    assert not item.report_drafted(BOB, NOW, TTL) and not item.report_submitted(BOB, NOW)
    assert not item.report_finalized(BOB, NOW)  # a second finalisation is a duplicate, not a change
    assert (item.status, item.reported_by) == (StatusValues.FINAL, ALICE)


def test_a_second_claim_while_the_first_holds_is_refused_and_a_lapsed_one_can_be_taken() -> None:
    item = an_item()
    item.claim(ALICE, NOW, TTL)
    with pytest.raises((AlreadyClaimed, NotYours)):
        item.claim(BOB, NOW + timedelta(minutes=1), TTL)
    assert not item.claim(ALICE, NOW + timedelta(minutes=10), TTL)  # a renewal
    assert item.claim_expires_at == NOW + timedelta(minutes=40)
    assert item.claim_expired(NOW + timedelta(minutes=41))
    item.release(NOW + timedelta(minutes=41))
    assert (item.status, item.assignee_id, item.claimed_by) == (StatusValues.RECEIVED, None, None)
    item.claim(BOB, NOW + timedelta(minutes=42), TTL)
    assert item.claimed_by == BOB


def test_an_item_assigned_to_another_radiologist_cannot_be_claimed() -> None:
    item = an_item()
    item.assign(ALICE, NOW)
    with pytest.raises(NotYours):
        item.claim(BOB, NOW, TTL)
    item.claim(ALICE, NOW, TTL)
    item.assign(BOB, NOW)  # a manager's reassignment ends Alice's claim
    assert (item.status, item.assignee_id, item.claimed_by) == (StatusValues.ASSIGNED, BOB, None)


def test_a_draft_by_someone_makes_them_the_reader() -> None:
    item = an_item()
    item.assign(ALICE, NOW)
    assert item.report_drafted(BOB, NOW, TTL)
    assert (item.status, item.assignee_id, item.claimed_by) == (StatusValues.IN_PROGRESS, BOB, BOB)


def test_the_strictest_policy_naming_a_modality_wins_else_the_catch_all_else_the_default() -> None:
    fallback = default_policies({PriorityValues.STAT: 60, PriorityValues.URGENT: 240,
                                 PriorityValues.ROUTINE: 1440}, 0.75)
    policies = [SlaPolicy(PriorityValues.STAT, "CT", 30), SlaPolicy(PriorityValues.STAT, "MR", 45),
                SlaPolicy(PriorityValues.STAT, "*", 50), SlaPolicy(PriorityValues.URGENT, "CT", 120)]
    assert policy_for(policies, PriorityValues.STAT, ["CT", "MR"], fallback).minutes == 30
    assert policy_for(policies, PriorityValues.STAT, ["US"], fallback).minutes == 50
    assert policy_for(policies, PriorityValues.URGENT, ["MR"], fallback).minutes == 240
    deadline = deadline_for(SlaPolicy(PriorityValues.STAT, "*", 60, 0.5), NOW)
    assert (deadline.due_at, deadline.warn_at) == (NOW + timedelta(hours=1), NOW + timedelta(minutes=30))


@pytest.mark.parametrize("bad", [dict(minutes=0), dict(minutes=-5), dict(warning_fraction=1.0),
                                 dict(warning_fraction=0), dict(modality="ct"), dict(modality="C T")])
def test_a_nonsense_policy_is_refused(bad: dict[str, object]) -> None:
    values: dict[str, object] = {"priority": PriorityValues.STAT, "modality": "CT", "minutes": 60, **bad}
    with pytest.raises(ValueError):
        SlaPolicy(**values)  # type: ignore[arg-type]


def test_priority_rules_raise_the_priority_and_never_lower_it() -> None:
    rules = [PriorityRule(PriorityValues.STAT, modality="CT", body_part="HEAD"),
             PriorityRule(PriorityValues.URGENT, description_contains="trauma"),
             PriorityRule(PriorityValues.ROUTINE, calling_ae_title="CLINIC")]
    assert priority_for(PriorityValues.ROUTINE, rules, ["CT"], ["HEAD"], "", "") is PriorityValues.STAT
    assert priority_for(PriorityValues.ROUTINE, rules, ["CT"], ["CHEST"], "CT Trauma series", "") \
        is PriorityValues.URGENT
    assert priority_for(PriorityValues.STAT, rules, ["MR"], [], "", "CLINIC") is PriorityValues.STAT
    assert priority_for(PriorityValues.ROUTINE, rules, ["MR"], ["KNEE"], "", "") is PriorityValues.ROUTINE
    with pytest.raises(ValueError):
        PriorityRule(PriorityValues.STAT)


def test_the_least_loaded_qualified_available_reader_gets_the_study() -> None:
    org = uuid4()
    item = an_item(modalities=("CT", "SR"), body_parts=("HEAD",))
    neuro = Reader(org, uuid4(), "neuro", modalities=["CT", "MR"], body_parts=["HEAD"])
    busy_neuro = Reader(org, uuid4(), "busy", modalities=["CT"])
    msk = Reader(org, uuid4(), "msk", modalities=["MR"])
    away = Reader(org, uuid4(), "away", available=False)
    capped = Reader(org, uuid4(), "capped", max_open=2)
    load = {neuro.user_id: 3, busy_neuro.user_id: 5, capped.user_id: 2}
    assert choose_reader(item, [neuro, busy_neuro, msk, away, capped], load) is neuro
    assert choose_reader(item, [msk, away, capped], load) is None
    earlier = Reader(org, uuid4(), "earlier", last_assigned_at=NOW - timedelta(hours=1))
    later = Reader(org, uuid4(), "later", last_assigned_at=NOW)
    assert choose_reader(item, [later, earlier], {}) is earlier  # equal load: the one who waited longer
