from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from dicom_ingest.adapters.tables import InstanceRow, PatientRow, SeriesRow, StudyRow
from dicom_ingest.domain.model import (
    DuplicatePolicy,
    IndexOutcome,
    IndexOutcomeValues,
    StoreInstance,
    add_unique,
    priority_of,
)
from radcommon.contracts import StudyReceivedV1, StudyUpdatedV1
from radcommon.uow import SqlUnitOfWork

log = logging.getLogger(__name__)


class _Held(NamedTuple):
    """A held instance row, locked (overwrite)."""

    id: UUID
    storage_key: str
    study_instance_uid: str
    series_instance_uid: str


class ConcurrentlyIndexed(Exception):
    """Under ``overwrite``, another transaction committed a SOP Instance UID this one was inserting: write the
    batch again, which then finds the row held and replaces it."""


async def index_instance(cmd: StoreInstance, uow: SqlUnitOfWork, duplicate_policy: DuplicatePolicy = "keep_first",
                         ) -> str:
    """Add the instance to the study index and commit; a SOP Instance UID already held is handled by the policy."""
    [outcome] = await index_instances([cmd], await uow.session.connection(), duplicate_policy)
    await uow.commit()
    return outcome


_instances, _patients, _studies, _series = (InstanceRow.__table__, PatientRow.__table__,  # type: ignore[attr-defined]
                                            StudyRow.__table__, SeriesRow.__table__)  # type: ignore[attr-defined]


class _IndexStatements:
    """The statements of :func:`index_instances`, built once per dialect so SQLAlchemy compiles each once:
    every list of rows or keys goes in as executemany parameters or an expanding ``IN``."""

    def __init__(self, dialect: str) -> None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        keys: sa.BindParameter[Any] = sa.bindparam("keys", expanding=True)
        i, p, st, se = _instances.c, _patients.c, _studies.c, _series.c
        self.held = sa.select(i.organization_id, i.sop_instance_uid).where(
            sa.tuple_(i.organization_id, i.sop_instance_uid).in_(keys))
        # overwrite: instances are locked before their studies, always in the order of their ids
        self.lock_held = sa.select(i.id, i.organization_id, i.sop_instance_uid, i.storage_key, st.study_instance_uid,
                                   se.series_instance_uid).select_from(
            _instances.join(_studies, st.id == i.study_ref).join(_series, se.id == i.series_ref)).where(
            sa.tuple_(i.organization_id, i.sop_instance_uid).in_(keys)).order_by(i.id).with_for_update(of=_instances)
        self.add_patients = insert(_patients).on_conflict_do_nothing(
            index_elements=["organization_id", "patient_id", "issuer_of_patient_id"])
        self.patients = sa.select(p.id, p.organization_id, p.patient_id, p.issuer_of_patient_id).where(
            sa.tuple_(p.organization_id, p.patient_id, p.issuer_of_patient_id).in_(keys))
        self.add_studies = insert(_studies).on_conflict_do_nothing(index_elements=["organization_id",
                                                                                   "study_instance_uid"])
        self.lock_studies = sa.select(st.id, st.organization_id, st.study_instance_uid, st.modalities,
                                      st.body_parts).where(
            sa.tuple_(st.organization_id, st.study_instance_uid).in_(keys)).order_by(st.id).with_for_update()
        self.add_series = insert(_series).on_conflict_do_nothing(
            index_elements=["organization_id", "series_instance_uid"]).returning(
            se.organization_id, se.series_instance_uid)
        self.series = sa.select(se.id, se.organization_id, se.series_instance_uid).where(
            sa.tuple_(se.organization_id, se.series_instance_uid).in_(keys))
        self.add_instances = insert(_instances).on_conflict_do_nothing(
            index_elements=["organization_id", "sop_instance_uid"]).returning(i.organization_id, i.sop_instance_uid)
        self.count_study = _studies.update().where(st.id == sa.bindparam("study")).values(
            number_of_series=st.number_of_series + sa.bindparam("new_series", type_=sa.Integer),
            number_of_instances=st.number_of_instances + sa.bindparam("new_instances", type_=sa.Integer),
            last_received_at=sa.bindparam("now", type_=sa.DateTime(timezone=True)),
            modalities=sa.bindparam("new_modalities", type_=sa.JSON),
            body_parts=sa.bindparam("new_body_parts", type_=sa.JSON))
        self.count_series = _series.update().where(se.id == sa.bindparam("series_ref")).values(
            number_of_instances=se.number_of_instances + sa.bindparam("new_instances", type_=sa.Integer))
        self.replace_instances = _instances.update().where(i.id == sa.bindparam("instance"))
        self.revise_study = _studies.update().where(st.id == sa.bindparam("study")).values(
            revision=st.revision + sa.bindparam("replaced", type_=sa.Integer),
            last_received_at=sa.bindparam("now", type_=sa.DateTime(timezone=True)))


_STATEMENTS = {name: _IndexStatements(name) for name in ("postgresql", "sqlite")}


async def index_instances(commands: Sequence[StoreInstance], conn: AsyncConnection,
                          duplicate_policy: DuplicatePolicy = "keep_first") -> list[str]:
    """Add received instances to the study index in the caller's transaction, in a fixed number of statements.

    Returns one :class:`IndexOutcomeValues` per command, in order. A patient, study or series is created
    by the first instance that names it, and later ones do not change its attributes. Studies are locked
    (``FOR UPDATE`` on PostgreSQL) while their counters, modalities and body parts are updated.
    PostgreSQL and SQLite (``INSERT ... ON CONFLICT DO NOTHING ... RETURNING``).

    A SOP Instance UID the index holds already, or that an earlier command of the batch carries:

    - ``keep_first``: keeps its first copy (duplicate) and changes nothing.
    - ``overwrite``: the last copy wins, as if the commands had come one by one. The held row is locked
      (``FOR UPDATE``, before any study) and takes the copy's file, size, transfer syntax, SOP class, instance
      number, number of frames and time (replaced; its outcome names the file released, to delete once this
      commits); the counters stay, the study's revision goes up so that it is announced again. Earlier copies
      of the batch are superseded; identical bytes (the same content-addressed key) change nothing (duplicate).
      A copy naming another Study or Series Instance UID than the held instance (or the batch's first copy)
      is a conflict: an instance is never moved. An insert that loses to another transaction's raises
      :class:`ConcurrentlyIndexed`, to be written again.
    """
    outcomes: list[str] = [IndexOutcomeValues.DUPLICATE] * len(commands)
    if not commands:
        return outcomes
    q = _STATEMENTS[conn.dialect.name]
    now = datetime.now(UTC)
    keys = list({(c.organization_id, c.attributes.sop_instance_uid) for c in commands})
    replacing: list[tuple[int, StoreInstance, _Held]] = []
    if duplicate_policy == "overwrite":
        held_rows = {(org, uid): _Held(id_, key, study, series)
                     for id_, org, uid, key, study, series in await conn.execute(q.lock_held, {"keys": keys})}
        fresh, replacing = _last_copies(commands, held_rows, outcomes)
    else:
        held = set(map(tuple, await conn.execute(q.held, {"keys": keys})))
        fresh = []
        for number, command in enumerate(commands):
            key = (command.organization_id, command.attributes.sop_instance_uid)
            if key not in held:
                held.add(key)
                fresh.append((number, command))
    if not fresh and not replacing:
        return outcomes

    study_keys = list(dict.fromkeys((c.organization_id, c.attributes.study_instance_uid)
                                    for _, c in [*fresh, *((n, c) for n, c, _ in replacing)]))
    study_state = await _lock_studies(conn, q, study_keys)
    if len(study_state) < len(study_keys):  # the first instances of new studies: their patients and studies
        await _add_studies(conn, q, [c for _, c in fresh if (c.organization_id, c.attributes.study_instance_uid)
                                     not in study_state], now)
        study_state = await _lock_studies(conn, q, study_keys)
    if fresh:
        lost = await _add_instances(conn, q, fresh, study_state, outcomes, now)
        if lost and duplicate_policy == "overwrite":
            raise ConcurrentlyIndexed(f"{len(lost)} SOP Instance UID(s) indexed meanwhile by another transaction")
    if replacing:
        await _replace_instances(conn, q, replacing, study_state, outcomes, now)
    return outcomes


def _last_copies(commands: Sequence[StoreInstance], held: dict[tuple[UUID, str], _Held], outcomes: list[str],
                 ) -> tuple[list[tuple[int, StoreInstance]], list[tuple[int, StoreInstance, _Held]]]:
    """overwrite: the last copy of each SOP Instance UID of the batch, to insert (fresh) or to replace the held row
    with; the outcomes of the others (superseded, conflict, duplicate) are set in ``outcomes``."""
    places = {key: (row.study_instance_uid, row.series_instance_uid) for key, row in held.items()}
    last: dict[tuple[UUID, str], int] = {}
    for number, c in enumerate(commands):
        key = (c.organization_id, c.attributes.sop_instance_uid)
        place = (c.attributes.study_instance_uid, c.attributes.series_instance_uid)
        if places.setdefault(key, place) != place:
            outcomes[number] = IndexOutcomeValues.CONFLICT
            log.warning("SOP Instance UID %s is held in study %s, series %s: a copy naming study %s, series %s is "
                        "refused (an instance is never moved)", key[1], *places[key], *place,
                        extra={"organization_id": str(key[0]), "sop_instance_uid": key[1]})
            continue
        if key in last:
            outcomes[last[key]] = IndexOutcomeValues.SUPERSEDED
        last[key] = number
    fresh: list[tuple[int, StoreInstance]] = []
    replacing: list[tuple[int, StoreInstance, _Held]] = []
    for key, number in sorted(last.items(), key=lambda item: item[1]):
        row = held.get(key)
        if row is None:
            fresh.append((number, commands[number]))
        elif row.storage_key != commands[number].storage_key:  # the same key is the same bytes: nothing changes
            replacing.append((number, commands[number], row))
    return fresh, replacing


async def _add_instances(conn: AsyncConnection, q: _IndexStatements, fresh: list[tuple[int, StoreInstance]],
                         study_state: StudyState, outcomes: list[str], now: datetime) -> set[tuple[UUID, str]]:
    """Insert the instances not held (creating their series) and count them; returns the keys another transaction
    inserted first (their outcomes stay duplicate)."""
    series_keys = list(dict.fromkeys((c.organization_id, c.attributes.series_instance_uid) for _, c in fresh))
    series_ids = await _series_ids(conn, q, series_keys)
    created_series: set[tuple[Any, ...]] = set()
    if len(series_ids) < len(series_keys):
        series_rows: dict[tuple[UUID, str], dict[str, Any]] = {}
        for _, c in fresh:
            a = c.attributes
            if (c.organization_id, a.series_instance_uid) not in series_ids:
                series_rows.setdefault((c.organization_id, a.series_instance_uid), dict(
                    id=uuid4(), organization_id=c.organization_id,
                    study_ref=study_state[(c.organization_id, a.study_instance_uid)][0],
                    series_instance_uid=a.series_instance_uid, modality=a.modality, series_number=a.series_number,
                    series_description=a.series_description, body_part_examined=a.body_part_examined,
                    number_of_instances=0))
        created_series = set(map(tuple, await conn.execute(q.add_series, list(series_rows.values()))))
        series_ids = await _series_ids(conn, q, series_keys)

    instance_rows = [dict(
        id=uuid4(), organization_id=c.organization_id,
        study_ref=study_state[(c.organization_id, c.attributes.study_instance_uid)][0],
        series_ref=series_ids[(c.organization_id, c.attributes.series_instance_uid)],
        sop_instance_uid=c.attributes.sop_instance_uid, sop_class_uid=c.attributes.sop_class_uid,
        transfer_syntax_uid=c.transfer_syntax_uid, instance_number=c.attributes.instance_number,
        number_of_frames=c.attributes.number_of_frames, storage_key=c.storage_key, size_bytes=c.size_bytes,
        received_at=now) for _, c in fresh]
    # a row another process committed meanwhile stays first: only what this statement inserted is stored
    stored = set(map(tuple, await conn.execute(q.add_instances, instance_rows)))

    lost: set[tuple[UUID, str]] = set()
    study_counts: dict[tuple[UUID, str], list[int]] = {}  # [series created, instances stored]
    series_counts: dict[tuple[UUID, str], int] = {}
    for number, c in fresh:
        a, org = c.attributes, c.organization_id
        if (org, a.sop_instance_uid) not in stored:
            lost.add((org, a.sop_instance_uid))
            continue
        outcomes[number] = IndexOutcomeValues.STORED
        counts = study_counts.setdefault((org, a.study_instance_uid), [0, 0])
        counts[1] += 1
        if (org, a.series_instance_uid) in created_series:
            created_series.discard((org, a.series_instance_uid))
            counts[0] += 1
        series_counts[(org, a.series_instance_uid)] = series_counts.get((org, a.series_instance_uid), 0) + 1
        state = study_state[(org, a.study_instance_uid)]
        state[1][:] = add_unique(state[1], a.modality)
        state[2][:] = add_unique(state[2], a.body_part_examined)
    if study_counts:
        await conn.execute(q.count_study, [
            dict(study=study_state[key][0], new_series=new_series, new_instances=new_instances, now=now,
                 new_modalities=study_state[key][1], new_body_parts=study_state[key][2])
            for key, (new_series, new_instances) in study_counts.items()])
        await conn.execute(q.count_series, [dict(series_ref=series_ids[key], new_instances=n)
                                            for key, n in series_counts.items()])
    return lost


async def _replace_instances(conn: AsyncConnection, q: _IndexStatements,
                             replacing: list[tuple[int, StoreInstance, _Held]], study_state: StudyState,
                             outcomes: list[str], now: datetime) -> None:
    """Point each held (locked) row at its new copy; its study counts one revision more and is not quiet yet."""
    await conn.execute(q.replace_instances, [dict(
        instance=row.id, storage_key=c.storage_key, size_bytes=c.size_bytes, transfer_syntax_uid=c.transfer_syntax_uid,
        sop_class_uid=c.attributes.sop_class_uid, instance_number=c.attributes.instance_number,
        number_of_frames=c.attributes.number_of_frames, received_at=now) for _, c, row in replacing])
    revisions: dict[tuple[UUID, str], int] = {}
    for number, c, row in replacing:
        outcomes[number] = IndexOutcome(IndexOutcomeValues.REPLACED, row.storage_key)
        key = (c.organization_id, c.attributes.study_instance_uid)
        revisions[key] = revisions.get(key, 0) + 1
    await conn.execute(q.revise_study, [dict(study=study_state[key][0], replaced=n, now=now)
                                        for key, n in revisions.items()])


StudyState = dict[tuple[UUID, str], tuple[UUID, list[str], list[str]]]


async def _lock_studies(conn: AsyncConnection, q: _IndexStatements, keys: list[tuple[UUID, str]]) -> StudyState:
    """id, modalities and body parts of the studies that exist, locked until the transaction ends."""
    return {(org, uid): (id_, list(modalities), list(body_parts))
            for id_, org, uid, modalities, body_parts in await conn.execute(q.lock_studies, {"keys": keys})}


async def _series_ids(conn: AsyncConnection, q: _IndexStatements,
                      keys: list[tuple[UUID, str]]) -> dict[tuple[UUID, str], UUID]:
    return {(org, uid): id_ for id_, org, uid in await conn.execute(q.series, {"keys": keys})}


async def _add_studies(conn: AsyncConnection, q: _IndexStatements, commands: list[StoreInstance],
                       now: datetime) -> None:
    """Create the studies (and their patients) that the commands name, unless another transaction did."""
    patient_rows: dict[tuple[UUID, str, str], dict[str, Any]] = {}
    for c in commands:
        a = c.attributes
        patient_rows.setdefault((c.organization_id, a.patient_id, a.issuer_of_patient_id), dict(
            id=uuid4(), organization_id=c.organization_id, patient_id=a.patient_id,
            issuer_of_patient_id=a.issuer_of_patient_id, patient_name=a.patient_name,
            patient_birth_date=a.patient_birth_date, patient_sex=a.patient_sex))
    await conn.execute(q.add_patients, list(patient_rows.values()))
    patient_ids = {(org, pid, issuer): id_ for id_, org, pid, issuer in await conn.execute(
        q.patients, {"keys": list(patient_rows)})}
    study_rows: dict[tuple[UUID, str], dict[str, Any]] = {}
    for c in commands:
        a = c.attributes
        study_rows.setdefault((c.organization_id, a.study_instance_uid), dict(
            id=uuid4(), organization_id=c.organization_id, study_instance_uid=a.study_instance_uid,
            patient_ref=patient_ids[(c.organization_id, a.patient_id, a.issuer_of_patient_id)],
            accession_number=a.accession_number, study_id=a.study_id, study_date=a.study_date,
            study_time=a.study_time, study_description=a.study_description,
            referring_physician_name=a.referring_physician_name, modalities=[], body_parts=[],
            priority=priority_of(a).value, calling_ae_title=c.calling_ae_title, number_of_series=0,
            number_of_instances=0, first_received_at=now, last_received_at=now, announced_instances=0,
            revision=0, announced_revision=0, announced_at=None))
    await conn.execute(q.add_studies, list(study_rows.values()))


async def announce_settled_studies(uow: SqlUnitOfWork, settle: timedelta, limit: int = 100) -> int:
    """Studies quiet for ``settle`` whose count or revision changed since last told: study.received or
    study.updated (a replaced instance changes the revision only)."""
    session = uow.session
    cutoff = datetime.now(UTC) - settle
    studies = (await session.execute(
        select(StudyRow, PatientRow).join(PatientRow, col(PatientRow.id) == col(StudyRow.patient_ref))
        .where(sa.or_(col(StudyRow.announced_instances) != col(StudyRow.number_of_instances),
                      col(StudyRow.announced_revision) != col(StudyRow.revision)),
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
        study.announced_revision = study.revision
        study.announced_at = datetime.now(UTC)
    await uow.commit()
    return len(studies)

