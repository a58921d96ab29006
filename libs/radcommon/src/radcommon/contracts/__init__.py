"""The event catalogue: every event model, and the registry from routing key to model."""

from __future__ import annotations

from radcommon.contracts.dicom_ingest import PriorityValues, StudyReceivedV1, StudyUpdatedV1
from radcommon.contracts.envelope import Event
from radcommon.contracts.identity import (
    PLATFORM_ORGANIZATION_ID,
    LoginFailedV1,
    OrganizationCreatedV1,
    RoleValues,
    SessionEndedV1,
    SessionEndReasonValues,
    SessionStartedV1,
    UserInvitedV1,
    UserRegisteredV1,
    UserRoleChangedV1,
)
from radcommon.contracts.reporting import (
    CriticalFindingCategoryValues,
    CriticalFindingFlaggedV1,
    DisputeOutcomeValues,
    DisputeResolvedV1,
    ReportAddendumAddedV1,
    ReportDisputedV1,
    ReportDraftedV1,
    ReportFinalizedV1,
    ReportSubmittedV1,
)
from radcommon.contracts.signature import ReportSignedV1, SignatureMeaningValues
from radcommon.contracts.worklist import (
    AssignmentReasonValues,
    SlaBreachedV1,
    SlaWarningV1,
    StudyAssignedV1,
    WorklistItemChangedV1,
    WorklistStatusValues,
)

EVENTS: tuple[type[Event], ...] = (
    StudyReceivedV1, StudyUpdatedV1,
    OrganizationCreatedV1, UserInvitedV1, UserRegisteredV1, UserRoleChangedV1,
    SessionStartedV1, SessionEndedV1, LoginFailedV1,
    StudyAssignedV1, SlaWarningV1, SlaBreachedV1, WorklistItemChangedV1,
    ReportDraftedV1, ReportSubmittedV1, ReportFinalizedV1, ReportAddendumAddedV1,
    CriticalFindingFlaggedV1, ReportDisputedV1, DisputeResolvedV1, ReportSignedV1,
)
REGISTRY: dict[str, type[Event]] = {model.routing_key: model for model in EVENTS}


class UnknownEventType(LookupError):
    pass


def parse_event(routing_key: str, body: bytes | str) -> Event:
    """Decode a message body into the model its routing key names."""
    try:
        model = REGISTRY[routing_key]
    except KeyError:
        raise UnknownEventType(routing_key) from None
    return model.model_validate_json(body)


__all__ = [
    "EVENTS",
    "PLATFORM_ORGANIZATION_ID",
    "REGISTRY",
    "AssignmentReasonValues",
    "CriticalFindingCategoryValues",
    "CriticalFindingFlaggedV1",
    "DisputeOutcomeValues",
    "DisputeResolvedV1",
    "Event",
    "LoginFailedV1",
    "OrganizationCreatedV1",
    "PriorityValues",
    "ReportAddendumAddedV1",
    "ReportDisputedV1",
    "ReportDraftedV1",
    "ReportFinalizedV1",
    "ReportSignedV1",
    "ReportSubmittedV1",
    "RoleValues",
    "SessionEndReasonValues",
    "SessionEndedV1",
    "SessionStartedV1",
    "SignatureMeaningValues",
    "SlaBreachedV1",
    "SlaWarningV1",
    "StudyAssignedV1",
    "StudyReceivedV1",
    "StudyUpdatedV1",
    "UnknownEventType",
    "UserInvitedV1",
    "UserRegisteredV1",
    "UserRoleChangedV1",
    "WorklistItemChangedV1",
    "WorklistStatusValues",
    "parse_event",
]
