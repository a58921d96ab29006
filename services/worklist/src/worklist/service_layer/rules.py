"""What the organisation's settings decide for an item: its priority, its deadline, its reader."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from radcommon.contracts import AssignmentReasonValues, PriorityValues, StudyAssignedV1
from worklist.config import WorklistSettings
from worklist.domain.assignment import Reader, choose_reader
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


async def assign_by_rules(uow: WorklistUnitOfWork, item: WorklistItem, now: datetime,
                          staff: Staff | None = None) -> bool:
    """Give a waiting item to the least-loaded qualified radiologist, if there is one.

    ``staff``, when given, is the organisation's readers and their load, kept up to date here, so a
    batch of items is assigned without asking the database again for each.
    """
    if staff is None:
        staff = await Staff.of(uow, item.organization_id)
    reader = choose_reader(item, staff.readers, staff.load) if staff.readers else None
    if reader is None:
        return False
    item.assign(reader.user_id, now)
    reader.last_assigned_at = now
    staff.load[reader.user_id] = staff.load.get(reader.user_id, 0) + 1
    await uow.readers.save(reader)
    await uow.save(item, "assigned")
    announce_assignment(uow, item, AssignmentReasonValues.RULES, None, None)
    return True


@dataclass
class Staff:
    readers: list[Reader]
    load: dict[UUID, int]

    @classmethod
    async def of(cls, uow: WorklistUnitOfWork, organization_id: UUID) -> Staff:
        readers = await uow.readers.of_organization(organization_id)
        load = await uow.items.open_load(organization_id) if readers else {}
        return cls(readers, load)
