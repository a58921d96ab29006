"""Events and tokens for worklist tests, unit and integration alike."""

from typing import Any
from uuid import UUID, uuid4

from radcommon.consumer import EventConsumer
from radcommon.contracts import Event, PriorityValues, RoleValues, StudyReceivedV1, UserRegisteredV1
from radcommon.db import Database
from radcommon.messaging import Message
from radcommon.testing import TokenMinter
from worklist.config import WorklistSettings
from worklist.service_layer.handlers import EVENT_HANDLERS
from worklist.service_layer.unit_of_work import WorklistUnitOfWork

ORG_A, ORG_B = uuid4(), uuid4()
TOKENS = TokenMinter()


def a_study(kind: type[StudyReceivedV1] = StudyReceivedV1, *, org: UUID = ORG_A, uid: str = "1.2.3",
            instances: int = 4, series: int = 2, priority: PriorityValues = PriorityValues.STAT,
            modalities: tuple[str, ...] = ("CT",), body_parts: tuple[str, ...] = ("CHEST",),
            patient_id: str = "P1", patient_name: str = "Doe^Jane", accession: str = "ACC1",
            **extra: Any) -> StudyReceivedV1:
    return kind(organization_id=org, study_instance_uid=uid, patient_id=patient_id, patient_name=patient_name,
                accession_number=accession, modalities=list(modalities), body_parts=list(body_parts),
                priority=priority, number_of_series=series, number_of_instances=instances, **extra)


def a_radiologist(org: UUID = ORG_A, name: str = "Dr Reader") -> UserRegisteredV1:
    return UserRegisteredV1(organization_id=org, user_id=uuid4(), email=f"{uuid4().hex[:8]}@telerad.test",
                            full_name=name, roles=[RoleValues.RADIOLOGIST])


def message(event: Event) -> Message:
    return Message(str(event.event_id), event.routing_key, event.model_dump_json().encode())




def bearer(org: UUID = ORG_A, *roles: RoleValues, user: UUID | None = None) -> dict[str, str]:
    return TOKENS.bearer(organization_id=org, roles=roles or (RoleValues.RADIOLOGIST,), user_id=user)


async def page(client: Any, org: UUID = ORG_A, query: str = "", *roles: RoleValues,
               user: UUID | None = None) -> dict[str, Any]:
    response = await client.get(f"/worklist{query}", headers=bearer(org, *roles, user=user))
    assert response.status == 200, await response.text()
    return await response.json()  # type: ignore[no-any-return]


class Feed:
    """Events handed to the worklist's consumer, as the bus would."""

    def __init__(self, db: Database, settings: WorklistSettings) -> None:
        self.uow = lambda: WorklistUnitOfWork(db, settings)
        self.consumer = EventConsumer("worklist.events", EVENT_HANDLERS, self.uow)

    async def __call__(self, *events: Event) -> None:
        for event in events:
            await self.consumer(message(event))
