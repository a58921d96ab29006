"""The study index answering a :class:`~dicom_ingest.dicom.query.Query`: C-FIND, C-MOVE, C-GET and QIDO-RS.

Every statement filters every table it reads on the caller's organisation. The SQL follows the
rules of :meth:`Match.matches <dicom_ingest.dicom.query.Match.matches>` (the unit tests hold both to
the same cases): Person Names compare through ``lower()``; other text compares exactly, with wild
cards as ``LIKE`` on PostgreSQL and as ``GLOB`` on SQLite (whose ``LIKE`` ignores case); times
compare as ``HHMMSS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from dicom_ingest.adapters.tables import InstanceRow, PatientRow, SeriesRow, StudyRow
from dicom_ingest.dicom.query import Exact, Match, Pattern, Query, QueryRetrieveLevelValues, Range
from radcommon.db import Database

Level = QueryRetrieveLevelValues

_COLUMNS: dict[str, Any] = {
    "PatientName": col(PatientRow.patient_name), "PatientID": col(PatientRow.patient_id),
    "IssuerOfPatientID": col(PatientRow.issuer_of_patient_id),
    "PatientBirthDate": col(PatientRow.patient_birth_date), "PatientSex": col(PatientRow.patient_sex),
    "StudyInstanceUID": col(StudyRow.study_instance_uid), "StudyDate": col(StudyRow.study_date),
    "StudyTime": col(StudyRow.study_time), "AccessionNumber": col(StudyRow.accession_number),
    "StudyID": col(StudyRow.study_id), "StudyDescription": col(StudyRow.study_description),
    "ReferringPhysicianName": col(StudyRow.referring_physician_name),
    "ModalitiesInStudy": col(StudyRow.modalities),
    "NumberOfStudyRelatedSeries": col(StudyRow.number_of_series),
    "NumberOfStudyRelatedInstances": col(StudyRow.number_of_instances),
    "SeriesInstanceUID": col(SeriesRow.series_instance_uid), "Modality": col(SeriesRow.modality),
    "SeriesNumber": col(SeriesRow.series_number), "SeriesDescription": col(SeriesRow.series_description),
    "BodyPartExamined": col(SeriesRow.body_part_examined),
    "NumberOfSeriesRelatedInstances": col(SeriesRow.number_of_instances),
    "SOPInstanceUID": col(InstanceRow.sop_instance_uid), "SOPClassUID": col(InstanceRow.sop_class_uid),
    "InstanceNumber": col(InstanceRow.instance_number), "NumberOfFrames": col(InstanceRow.number_of_frames),
    "AvailableTransferSyntaxUID": col(InstanceRow.transfer_syntax_uid),
}
_STUDY_ID = "_study_id"


@dataclass(frozen=True)
class RetrievableInstance:
    """One C-STORE sub-operation of a C-MOVE or C-GET: what to send, and where its file is."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    storage_key: str


class SqlIndexQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, organization_id: UUID, query: Query, *, newest_first: bool = False) -> list[dict[str, Any]]:
        """The matching entities of the query's level, one dict per entity of its return keys' values.

        ``newest_first`` pages as QIDO-RS does: the newest study first, ties by UID, then series and
        instances by number (migration 0005 indexes it); otherwise in C-FIND's order.
        """
        columns = [_column(keyword, organization_id).label(keyword) for keyword in query.return_keys
                   if keyword in _COLUMNS or keyword.startswith("NumberOfPatientRelated")]
        if query.level is not Level.PATIENT:
            columns.append(col(StudyRow.id).label(_STUDY_ID))
        order = (_NEWEST_FIRST if newest_first else _ORDER)[query.level]
        statement = self._matching(sa.select(*columns), query, organization_id).order_by(*order)
        if query.limit is not None:
            statement = statement.limit(query.limit)
        if query.offset:
            statement = statement.offset(query.offset)
        async with self.db.session() as session:
            rows = [dict(row) for row in (await session.execute(statement)).mappings().all()]
            if "SOPClassesInStudy" in query.return_keys and rows:
                classes = await session.execute(
                    sa.select(col(InstanceRow.study_ref), col(InstanceRow.sop_class_uid)).distinct()
                    .where(col(InstanceRow.organization_id) == organization_id,
                           col(InstanceRow.study_ref).in_({row[_STUDY_ID] for row in rows}))
                    .order_by(col(InstanceRow.sop_class_uid)))
                by_study: dict[UUID, list[str]] = {}
                for study_id, sop_class_uid in classes.all():
                    by_study.setdefault(study_id, []).append(sop_class_uid)
                for row in rows:
                    row["SOPClassesInStudy"] = by_study.get(row[_STUDY_ID], [])
        for row in rows:
            row.pop(_STUDY_ID, None)
        return rows

    async def instances(self, organization_id: UUID, query: Query, limit: int) -> list[RetrievableInstance]:
        """The instances a retrieval at the query's level sends, study by study, series by series."""
        columns: list[Any] = [col(InstanceRow.sop_class_uid), col(InstanceRow.sop_instance_uid),
                              col(InstanceRow.transfer_syntax_uid), col(InstanceRow.storage_key)]
        statement = self._matching(sa.select(*columns), query, organization_id, level=Level.IMAGE)
        statement = statement.order_by(*_ORDER[Level.IMAGE]).limit(limit)
        async with self.db.session() as session:
            rows = (await session.execute(statement)).all()
        return [RetrievableInstance(*row) for row in rows]

    def _matching(self, statement: sa.Select[Any], query: Query, organization_id: UUID,
                  level: Level | None = None) -> sa.Select[Any]:
        statement = _joined(statement, level or query.level, organization_id)
        return statement.where(*(self._condition(match, organization_id) for match in query.matches))

    def _condition(self, match: Match, organization_id: UUID) -> ColumnElement[bool]:
        keyword = match.attribute.keyword
        if keyword == "ModalitiesInStudy":  # any series of the study: the JSON copy is for answers only
            return sa.exists().where(col(SeriesRow.study_ref) == col(StudyRow.id),
                                     col(SeriesRow.organization_id) == organization_id,
                                     self._terms(col(SeriesRow.modality), match))
        if keyword == "SOPClassesInStudy":
            return sa.exists().where(col(InstanceRow.study_ref) == col(StudyRow.id),
                                     col(InstanceRow.organization_id) == organization_id,
                                     self._terms(col(InstanceRow.sop_class_uid), match))
        return self._terms(_COLUMNS[keyword], match)

    def _terms(self, column: Any, match: Match) -> ColumnElement[bool]:
        folded = match.case_insensitive
        exact = [t.value for t in match.terms if isinstance(t, Exact)]
        conditions: list[ColumnElement[bool]] = []
        if exact:
            if folded:
                conditions.append(sa.func.lower(column).in_([str(v).lower() for v in exact]))
            else:
                conditions.append(column.in_(exact))
        for term in match.terms:
            if isinstance(term, Pattern):
                conditions.append(self._wildcard(column, term.pattern, folded))
            elif isinstance(term, Range):
                conditions.append(_range(column, term, time=match.attribute.vr == "TM"))
        return sa.or_(*conditions)

    def _wildcard(self, column: Any, pattern: str, folded: bool) -> ColumnElement[bool]:
        if folded:
            return sa.func.lower(column).like(_like(pattern.lower()), escape="\\")  # type: ignore[no-any-return]
        if self.db.is_postgres:
            return column.like(_like(pattern), escape="\\")  # type: ignore[no-any-return]
        return column.op("GLOB")(_glob(pattern))  # type: ignore[no-any-return]


def _column(keyword: str, organization_id: UUID) -> Any:
    """A column, or for the patient's counts a correlated subquery over its studies."""
    if keyword in _COLUMNS:
        return _COLUMNS[keyword]
    counted = {"NumberOfPatientRelatedStudies": sa.func.count(col(StudyRow.id)),
               "NumberOfPatientRelatedSeries": sa.func.coalesce(sa.func.sum(col(StudyRow.number_of_series)), 0),
               "NumberOfPatientRelatedInstances": sa.func.coalesce(
                   sa.func.sum(col(StudyRow.number_of_instances)), 0)}[keyword]
    studies = sa.select(counted).where(col(StudyRow.patient_ref) == col(PatientRow.id),
                                       col(StudyRow.organization_id) == organization_id)
    return studies.correlate(PatientRow).scalar_subquery()  # type: ignore[arg-type]


def _joined(statement: sa.Select[Any], level: Level, organization_id: UUID) -> sa.Select[Any]:
    """From the level's table up to the patient, every table limited to the organisation."""
    tables: Sequence[Any] = (PatientRow, StudyRow, SeriesRow, InstanceRow)[:level.depth + 1]
    statement = statement.select_from(tables[-1])
    if level.depth >= Level.IMAGE.depth:
        statement = statement.join(SeriesRow, col(SeriesRow.id) == col(InstanceRow.series_ref))
    if level.depth >= Level.SERIES.depth:
        statement = statement.join(StudyRow, col(StudyRow.id) == col(SeriesRow.study_ref))
    if level.depth >= Level.STUDY.depth:
        statement = statement.join(PatientRow, col(PatientRow.id) == col(StudyRow.patient_ref))
    return statement.where(*(col(table.organization_id) == organization_id for table in tables))


def _range(column: Any, term: Range, *, time: bool) -> ColumnElement[bool]:
    if time:  # the rule of query.normalized_time; an empty time has no value to compare
        value = sa.func.substr(sa.func.replace(column, ":", "", type_=sa.String).concat("000000"), 1, 6)
        conditions = [column != ""]
    else:
        value, conditions = column, []
    if term.lower is not None:
        conditions.append(value >= term.lower)
    if term.upper is not None:
        conditions.append(value <= term.upper)
    return sa.and_(*conditions)


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _glob(pattern: str) -> str:
    return pattern.replace("[", "[[]")  # '*' and '?' mean in GLOB what they mean in DICOM


_ORDER: dict[Level, tuple[Any, ...]] = {
    Level.PATIENT: (col(PatientRow.patient_name), col(PatientRow.patient_id), col(PatientRow.id)),
    Level.STUDY: (col(StudyRow.study_date).asc().nulls_last(), col(StudyRow.study_time), col(StudyRow.id)),
    Level.SERIES: (col(StudyRow.id), col(SeriesRow.series_number).asc().nulls_last(), col(SeriesRow.id)),
    Level.IMAGE: (col(StudyRow.id), col(SeriesRow.series_number).asc().nulls_last(), col(SeriesRow.id),
                  col(InstanceRow.instance_number).asc().nulls_last(), col(InstanceRow.id)),
}
_NEWEST_STUDY = (col(StudyRow.study_date).desc().nulls_last(), col(StudyRow.study_time).desc(),
                 col(StudyRow.study_instance_uid))
_NEWEST_FIRST: dict[Level, tuple[Any, ...]] = {
    Level.PATIENT: _ORDER[Level.PATIENT],
    Level.STUDY: _NEWEST_STUDY,
    Level.SERIES: (*_NEWEST_STUDY, col(SeriesRow.series_number).asc().nulls_last(), col(SeriesRow.series_instance_uid)),
    Level.IMAGE: (*_NEWEST_STUDY, col(SeriesRow.series_number).asc().nulls_last(), col(SeriesRow.series_instance_uid),
                  col(InstanceRow.instance_number).asc().nulls_last(), col(InstanceRow.sop_instance_uid)),
}
