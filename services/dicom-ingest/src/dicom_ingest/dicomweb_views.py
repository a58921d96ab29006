"""Read side of WADO: the stored instances of a study, series or instance, within one organisation."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlmodel import col, select

from dicom_ingest.adapters.tables import InstanceRow, SeriesRow, StudyRow
from radcommon.db import Database


@dataclass(frozen=True)
class StoredInstance:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    number_of_frames: int | None
    storage_key: str


async def stored_instances(db: Database, organization_id: UUID, study_instance_uid: str,
                           series_instance_uid: str | None = None,
                           sop_instance_uid: str | None = None) -> list[StoredInstance]:
    """In series then instance number order; empty when the organisation holds nothing there."""
    query = (
        select(InstanceRow, col(SeriesRow.series_instance_uid), col(StudyRow.study_instance_uid))
        .join(SeriesRow, col(SeriesRow.id) == col(InstanceRow.series_ref))
        .join(StudyRow, col(StudyRow.id) == col(InstanceRow.study_ref))
        .where(col(InstanceRow.organization_id) == organization_id,
               col(SeriesRow.organization_id) == organization_id,
               col(StudyRow.organization_id) == organization_id,
               col(StudyRow.study_instance_uid) == study_instance_uid))
    if series_instance_uid is not None:
        query = query.where(col(SeriesRow.series_instance_uid) == series_instance_uid)
    if sop_instance_uid is not None:
        query = query.where(col(InstanceRow.sop_instance_uid) == sop_instance_uid)
    query = query.order_by(col(SeriesRow.series_number).nulls_last(), col(SeriesRow.series_instance_uid),
                           col(InstanceRow.instance_number).nulls_last(), col(InstanceRow.sop_instance_uid))
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    return [StoredInstance(study, series, row.sop_instance_uid, row.sop_class_uid, row.transfer_syntax_uid,
                           row.number_of_frames, row.storage_key) for row, series, study in rows]
