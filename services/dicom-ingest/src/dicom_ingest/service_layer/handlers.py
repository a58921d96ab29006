from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from dicom_ingest.adapters.tables import InstanceRow, PatientRow, SeriesRow, StudyRow
from dicom_ingest.domain.model import IndexOutcomeValues, StoreInstance, add_unique, priority_of
from radcommon.contracts import StudyReceivedV1, StudyUpdatedV1
from radcommon.uow import SqlUnitOfWork


async def index_instance(cmd: StoreInstance, uow: SqlUnitOfWork) -> str:
    """Add the instance to the study index; a SOP Instance UID already held keeps its first copy."""
    a, org, session = cmd.attributes, cmd.organization_id, uow.session
    if await session.scalar(select(col(InstanceRow.id)).where(
            col(InstanceRow.organization_id) == org, col(InstanceRow.sop_instance_uid) == a.sop_instance_uid)):
        return IndexOutcomeValues.DUPLICATE
    now = datetime.now(UTC)
    patient = (await session.execute(select(PatientRow).where(
        col(PatientRow.organization_id) == org, col(PatientRow.patient_id) == a.patient_id,
        col(PatientRow.issuer_of_patient_id) == a.issuer_of_patient_id))).scalar_one_or_none()
    if patient is None:
        patient = PatientRow(organization_id=org, patient_id=a.patient_id, issuer_of_patient_id=a.issuer_of_patient_id,
                             patient_name=a.patient_name, patient_birth_date=a.patient_birth_date,
                             patient_sex=a.patient_sex)
        session.add(patient)
        await session.flush()
    study = (await session.execute(select(StudyRow).where(
        col(StudyRow.organization_id) == org, col(StudyRow.study_instance_uid) == a.study_instance_uid)
        .with_for_update())).scalar_one_or_none()
    if study is None:
        study = StudyRow(organization_id=org, study_instance_uid=a.study_instance_uid, patient_ref=patient.id,
                         accession_number=a.accession_number, study_id=a.study_id, study_date=a.study_date,
                         study_time=a.study_time, study_description=a.study_description,
                         referring_physician_name=a.referring_physician_name, modalities=[], body_parts=[],
                         priority=priority_of(a).value, calling_ae_title=cmd.calling_ae_title,
                         first_received_at=now, last_received_at=now)
        session.add(study)
        await session.flush()
    series = (await session.execute(select(SeriesRow).where(
        col(SeriesRow.organization_id) == org, col(SeriesRow.series_instance_uid) == a.series_instance_uid))
    ).scalar_one_or_none()
    if series is None:
        series = SeriesRow(organization_id=org, study_ref=study.id, series_instance_uid=a.series_instance_uid,
                           modality=a.modality, series_number=a.series_number,
                           series_description=a.series_description, body_part_examined=a.body_part_examined)
        session.add(series)
        await session.flush()
        study.number_of_series += 1
    series.number_of_instances += 1
    study.number_of_instances += 1
    study.last_received_at = now
    study.modalities = add_unique(list(study.modalities), a.modality)
    study.body_parts = add_unique(list(study.body_parts), a.body_part_examined)
    session.add(InstanceRow(organization_id=org, study_ref=study.id, series_ref=series.id,
                            sop_instance_uid=a.sop_instance_uid, sop_class_uid=a.sop_class_uid,
                            transfer_syntax_uid=cmd.transfer_syntax_uid, instance_number=a.instance_number,
                            number_of_frames=a.number_of_frames, storage_key=cmd.storage_key,
                            size_bytes=cmd.size_bytes, received_at=now))
    await uow.commit()
    return IndexOutcomeValues.STORED


async def announce_settled_studies(uow: SqlUnitOfWork, settle: timedelta, limit: int = 100) -> int:
    """Studies quiet for ``settle`` whose count changed since last told: study.received or study.updated."""
    session = uow.session
    cutoff = datetime.now(UTC) - settle
    studies = (await session.execute(
        select(StudyRow, PatientRow).join(PatientRow, col(PatientRow.id) == col(StudyRow.patient_ref))
        .where(col(StudyRow.announced_instances) != col(StudyRow.number_of_instances),
               col(StudyRow.last_received_at) <= cutoff)
        .order_by(col(StudyRow.last_received_at)).limit(limit)
        .with_for_update(of=StudyRow, skip_locked=True))).all()
    for study, patient in studies:
        kind = StudyReceivedV1 if study.announced_at is None else StudyUpdatedV1
        uow.publish(kind(
            organization_id=study.organization_id, study_instance_uid=study.study_instance_uid,
            patient_id=patient.patient_id, patient_name=patient.patient_name,
            patient_birth_date=patient.patient_birth_date, patient_sex=patient.patient_sex,
            accession_number=study.accession_number, study_date=study.study_date,
            study_description=study.study_description, referring_physician_name=study.referring_physician_name,
            modalities=list(study.modalities), body_parts=list(study.body_parts), priority=study.priority,
            number_of_series=study.number_of_series, number_of_instances=study.number_of_instances,
            calling_ae_title=study.calling_ae_title))
        study.announced_instances = study.number_of_instances
        study.announced_at = datetime.now(UTC)
    await uow.commit()
    return len(studies)

