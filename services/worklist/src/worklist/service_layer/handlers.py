from __future__ import annotations

from collections.abc import Sequence

from radcommon.auth import record_session_ended
from radcommon.consumer import EventHandler
from radcommon.contracts import Event, SessionEndedV1, StudyReceivedV1, StudyUpdatedV1
from worklist.domain.model import WorklistItem
from worklist.service_layer.unit_of_work import WorklistUnitOfWork


async def put_study_on_worklist(event: StudyReceivedV1, uow: WorklistUnitOfWork) -> None:
    item = await uow.items.for_study(event.organization_id, event.study_instance_uid)
    if item is None:
        item = WorklistItem.for_study(event)
    else:
        item.study_changed(event)
    await uow.items.save(item)


EVENT_HANDLERS: dict[type[Event], Sequence[EventHandler]] = {
    StudyReceivedV1: [put_study_on_worklist],
    StudyUpdatedV1: [put_study_on_worklist],
    SessionEndedV1: [record_session_ended],
}
