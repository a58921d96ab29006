"""What people ask of the worklist: claim, release, assign, reprioritise, and the organisation's settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from radcommon.contracts import AssignmentReasonValues, PriorityValues
from worklist.domain.assignment import Reader
from worklist.domain.model import NotYours, WorklistError, WorklistItem
from worklist.domain.priority import PriorityRule
from worklist.domain.sla import SlaPolicy
from worklist.service_layer.rules import announce_assignment, assign_by_rules, deadline_of
from worklist.service_layer.unit_of_work import WorklistUnitOfWork


class ItemNotFound(WorklistError):
    pass


class UnknownReader(WorklistError):
    pass


async def _item(uow: WorklistUnitOfWork, organization_id: UUID, item_id: UUID) -> WorklistItem:
    item = await uow.items.get(organization_id, item_id)
    if item is None:
        raise ItemNotFound("no such worklist item")
    return item


async def claim_item(uow: WorklistUnitOfWork, organization_id: UUID, item_id: UUID,
                     radiologist_id: UUID) -> WorklistItem:
    now = datetime.now(UTC)
    async with uow:
        item = await _item(uow, organization_id, item_id)
        newly_assigned = item.claim(radiologist_id, now, timedelta(minutes=uow.settings.claim_minutes))
        await uow.save(item, "claimed")
        if newly_assigned:
            announce_assignment(uow, item, AssignmentReasonValues.CLAIM, radiologist_id, None)
        await uow.commit()
    return item


async def release_item(uow: WorklistUnitOfWork, organization_id: UUID, item_id: UUID, user_id: UUID,
                       *, on_behalf: bool) -> WorklistItem:
    """The claimant lets go (or a manager, ``on_behalf``); the rules may hand the item out again."""
    now = datetime.now(UTC)
    async with uow:
        item = await _item(uow, organization_id, item_id)
        if item.claimed_by not in (None, user_id) and not on_behalf:
            raise NotYours("only the radiologist reading this study, or a manager, can release it")
        item.release(now)
        await uow.save(item, "released")
        await assign_by_rules(uow, item, now)
        await uow.commit()
    return item


async def assign_item(uow: WorklistUnitOfWork, organization_id: UUID, item_id: UUID, assignee_id: UUID,
                      assigned_by: UUID) -> WorklistItem:
    now = datetime.now(UTC)
    async with uow:
        item = await _item(uow, organization_id, item_id)
        reader = await uow.readers.get(organization_id, assignee_id)
        if reader is None or not reader.active:
            raise UnknownReader("the assignee is not a radiologist reading for this organisation")
        previous = item.assignee_id
        item.assign(assignee_id, now)
        reader.last_assigned_at = now
        await uow.readers.save(reader)
        await uow.save(item, "assigned")
        announce_assignment(uow, item, AssignmentReasonValues.MANUAL, assigned_by, previous)
        await uow.commit()
    return item


async def change_priority(uow: WorklistUnitOfWork, organization_id: UUID, item_id: UUID,
                          priority: PriorityValues) -> WorklistItem:
    """A new priority means a new deadline, from the organisation's policy, counted from arrival."""
    now = datetime.now(UTC)
    async with uow:
        item = await _item(uow, organization_id, item_id)
        if not item.open and item.preliminary_at is None:
            raise WorklistError("a reported study keeps its priority")
        deadline = await deadline_of(uow, organization_id, priority, item.modalities, item.received_at)
        item.reprioritise(priority, deadline, now)
        await uow.save(item, "reprioritised")
        await uow.commit()
    return item


async def replace_sla_policies(uow: WorklistUnitOfWork, organization_id: UUID, policies: Sequence[SlaPolicy]) -> None:
    """New policies apply to studies that arrive from now on; deadlines already set stay."""
    keys = [(p.priority, p.modality) for p in policies]
    if len(keys) != len(set(keys)):
        raise ValueError("one policy per priority and modality")
    async with uow:
        await uow.policies.replace_sla_policies(organization_id, policies)
        await uow.commit()


async def replace_priority_rules(uow: WorklistUnitOfWork, organization_id: UUID,
                                 rules: Sequence[PriorityRule]) -> None:
    async with uow:
        await uow.policies.replace_priority_rules(organization_id, rules)
        await uow.commit()


async def update_reader(uow: WorklistUnitOfWork, organization_id: UUID, user_id: UUID,
                        changes: Mapping[str, Any]) -> Reader:
    """Change only what ``changes`` names: display_name, modalities, body_parts, available, max_open."""
    async with uow:
        reader = await uow.readers.get(organization_id, user_id)
        if reader is None:
            raise UnknownReader("no radiologist with this id reads for this organisation")
        for name, value in changes.items():
            if name in ("modalities", "body_parts"):
                value = sorted({code.upper() for code in value})
            setattr(reader, name, value)
        await uow.readers.save(reader)
        await uow.commit()
    return reader
