from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from radcommon.config import CommonSettings
from radcommon.contracts import WorklistItemChangedV1
from radcommon.messaging import PermanentFailure
from radcommon.messaging.local import LocalBus
from reporting import bootstrap
from reporting.config import ReportingSettings

Desk = Any


def test_the_service_consumes_its_events_from_its_own_queue_and_database(tmp_path: Path) -> None:
    common = CommonSettings(data_dir=tmp_path)
    service = bootstrap.build(common, LocalBus(tmp_path / "bus.db"), embedded=False)
    [consumer] = service.consumers
    assert consumer.queue == "reporting.events"
    assert sorted(consumer.bindings) == ["identity.organization.created.v1", "identity.session.ended.v1",
                                         "signature.report.signed.v1", "worklist.item.changed.v1"]
    assert service.db is not None and service.db.url.database == "telerad_reporting"
    assert (service.http_port, ReportingSettings(http_port=1).http_port) == (8084, 1)


async def test_the_openapi_document_describes_every_route(desk: Desk) -> None:
    document = await (await desk.client.get("/openapi.json")).json()
    paths = document["paths"]
    assert {"/reports", "/reports/{report_id}/draft", "/reports/{report_id}/rendering",
            "/disputes/{dispute_id}/resolve", "/peer-reviews/stats",
            "/report-templates/{template_id}/versions/{version}"} <= set(paths)
    assert paths["/reports/{report_id}/draft"]["put"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DraftRequest"}
    assert "integrity" in document["components"]["schemas"]["ReportView"]["properties"]


async def test_a_worklist_change_that_cannot_be_read_goes_to_the_dead_letters(desk: Desk) -> None:
    unreadable = WorklistItemChangedV1(organization_id=desk.org_a, sequence=1, item_id=uuid4(), change="created",
                                       item={"status": "lost"})
    with pytest.raises(PermanentFailure):
        await desk.feed(unreadable)
