"""What the organisation's settings decide for an item: its priority, its deadline, its reader."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from radcommon.contracts import AssignmentReasonValues, PriorityValues, StudyAssignedV1
from worklist.config import WorklistSettings
from worklist.domain.assignment import choose_reader
from worklist.domain.model import Deadline, WorklistItem
from worklist.domain.priority import priority_for
from worklist.domain.sla import SlaPolicy, deadline_for, default_policies, policy_for
from worklist.service_layer.unit_of_work import WorklistUnitOfWork


async def priority_of(uow: WorklistUnitOfWork, organization_id: UUID, requested: PriorityValues,
                      modalities: list[str], body_parts: list[str], description: str,
                      calling_ae_title: str) -> PriorityValues:
    rules = await uow.policies.priority_rules(organization_id)
    return priority_for(requested, rules, modalities, body_parts, description, calling_ae_title)


def default_sla_policies(settings: WorklistSettings) -> list[SlaPolicy]:
    return default_policies({PriorityValues.STAT: settings.sla_stat_minutes,
                             PriorityValues.URGENT: settings.sla_urgent_minutes,
                             PriorityValues.ROUTINE: settings.sla_routine_minutes}, settings.sla_warning_fraction)


async def deadline_of(uow: WorklistUnitOfWork, organization_id: UUID, priority: PriorityValues,
                      modalities: list[str], received_at: datetime) -> Deadline:
    policies = await uow.policies.sla_policies(organization_id)
    return deadline_for(policy_for(policies, priority, modalities, default_sla_policies(uow.settings)), received_at)


def announce_assignment(uow: WorklistUnitOfWork, item: WorklistItem, reason: AssignmentReasonValues,
                        assigned_by: UUID | None, previous: UUID | None) -> None:
    assert item.assignee_id is not None
    uow.publish(StudyAssignedV1(
        organization_id=item.organization_id, item_id=item.id, study_instance_uid=item.study_instance_uid,
        accession_number=item.accession_number, assignee_id=item.assignee_id, previous_assignee_id=previous,
        assigned_by=assigned_by, reason=reason, priority=item.priority, deadline=item.deadline))


async def assign_by_rules(uow: WorklistUnitOfWork, item: WorklistItem, now: datetime) -> bool:
    """Give a waiting item to the least-loaded qualified radiologist, if there is one."""
    readers = await uow.readers.of_organization(item.organization_id)
    if not readers:
        return False
    reader = choose_reader(item, readers, await uow.items.open_load(item.organization_id))
    if reader is None:
        return False
    item.assign(reader.user_id, now)
    reader.last_assigned_at = now
    await uow.readers.save(reader)
    await uow.save(item, "assigned")
    announce_assignment(uow, item, AssignmentReasonValues.RULES, None, None)
    return True
