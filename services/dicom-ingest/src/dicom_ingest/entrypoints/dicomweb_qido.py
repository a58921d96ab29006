"""QIDO-RS (PS3.18 §10.6): searches for studies, series and instances, answered from the study index.

The request is understood by ``dicom/qido.py``, matched by ``adapters/index_queries.py`` within the
caller's organisation (another organisation's studies never match), and answered as
``application/dicom+json``. No match is ``200`` with ``[]``: PS3.18 §8.3.4.4.1 says 204, but CP-2473
makes it 200 with an empty payload, as RFC 9110 and viewers such as OHIF expect.
"""

from __future__ import annotations

import json

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from dicom_ingest.adapters.index_queries import SqlIndexQueries
from dicom_ingest.dicom.media_types import DICOM_JSON, accepts_dicom_json, parse_accept
from dicom_ingest.dicom.qido import (
    ALL_INSTANCES,
    ALL_SERIES,
    ALL_STUDIES,
    MAX_OFFSET,
    MAX_RESULTS,
    SERIES_INSTANCES,
    STUDY_INSTANCES,
    STUDY_SERIES,
    Resource,
    parse_search,
    search_results,
)
from dicom_ingest.dicom.query import InvalidQuery
from dicom_ingest.entrypoints.dicomweb_common import NotAcceptable, reader
from dicom_ingest.entrypoints.dicomweb_models import SeriesPath, StudyPath
from radcommon.db import Database
from radcommon.openapi import operation
from radcommon.problems import BadRequest

index_key = web.AppKey("qido_index", SqlIndexQueries)
_JSON = "application/json"


def add_routes(app: web.Application, db: Database, studies: str) -> None:
    """Register the six search resources; ``studies`` is the DICOMweb root's ``…/studies`` path."""
    root = studies.rsplit("/", 1)[0]
    app[index_key] = SqlIndexQueries(db)
    for path, handler in ((studies, search_for_studies), (studies + "/{study}/series", search_for_study_series),
                          (root + "/series", search_for_series),
                          (studies + "/{study}/series/{series}/instances", search_for_series_instances),
                          (studies + "/{study}/instances", search_for_study_instances),
                          (root + "/instances", search_for_instances)):
        app.router.add_get(path, handler)


class SearchQuery(BaseModel):
    """Search parameters (PS3.18 §8.3.4); any other parameter is an attribute match by keyword or tag."""

    model_config = ConfigDict(extra="allow")

    includefield: str | None = Field(default=None, examples=["00081030,StudyDescription"],
                                     description="Attributes to return besides the default ones: keywords or "
                                                 "tags, comma-separated, repeatable; 'all' for every one held.")
    limit: int | None = Field(default=None, ge=0, le=MAX_OFFSET,
                              description=f"Most results to return; at most {MAX_RESULTS} are, whatever the limit.")
    offset: int | None = Field(default=None, ge=0, le=MAX_OFFSET,
                               description="Results to skip (the order is stable: newest study first).")
    fuzzymatching: bool | None = Field(default=None, description="Not supported: true is answered with a "
                                                                 "Warning and literal matching.")


_SEARCH = {200: None, 400: None, 403: None, 406: None}
_DESCRIPTION = (
    "Matches by keyword or tag (PatientID=PAT1, PatientName=SMITH*, StudyDate=20240101-20240131, "
    "ModalitiesInStudy=CT, StudyInstanceUID=1.2.3,1.2.4 ...) with the matching of PS3.4 §C.2.2.2, within the "
    "caller's organisation. The answer is application/dicom+json (or application/json when asked for): one object "
    "per match, with the attributes of PS3.18 Tables 10.6.3-3/4/5, those matched on and those asked for by "
    "includefield; [] when nothing matches. Attributes that cannot be matched are ignored and named in a Warning "
    "header (299); so is fuzzymatching=true, and a result cut off at the most one response carries.")


@operation("Search for studies (QIDO-RS)", query=SearchQuery, responses=_SEARCH, tags=["dicomweb"], security=True,
           description=_DESCRIPTION)
async def search_for_studies(request: web.Request) -> web.Response:
    return await _search(request, ALL_STUDIES)


@operation("Search for a study's series (QIDO-RS)", path=StudyPath, query=SearchQuery, responses=_SEARCH,
           tags=["dicomweb"], security=True, description=_DESCRIPTION)
async def search_for_study_series(request: web.Request) -> web.Response:
    return await _search(request, STUDY_SERIES)


@operation("Search for series (QIDO-RS)", query=SearchQuery, responses=_SEARCH, tags=["dicomweb"], security=True,
           description=_DESCRIPTION)
async def search_for_series(request: web.Request) -> web.Response:
    return await _search(request, ALL_SERIES)


@operation("Search for a series' instances (QIDO-RS)", path=SeriesPath, query=SearchQuery, responses=_SEARCH,
           tags=["dicomweb"], security=True, description=_DESCRIPTION)
async def search_for_series_instances(request: web.Request) -> web.Response:
    return await _search(request, SERIES_INSTANCES)


@operation("Search for a study's instances (QIDO-RS)", path=StudyPath, query=SearchQuery, responses=_SEARCH,
           tags=["dicomweb"], security=True, description=_DESCRIPTION)
async def search_for_study_instances(request: web.Request) -> web.Response:
    return await _search(request, STUDY_INSTANCES)


@operation("Search for instances (QIDO-RS)", query=SearchQuery, responses=_SEARCH, tags=["dicomweb"], security=True,
           description=_DESCRIPTION)
async def search_for_instances(request: web.Request) -> web.Response:
    return await _search(request, ALL_INSTANCES)


async def _search(request: web.Request, resource: Resource) -> web.Response:
    dicomweb, organization_id = reader(request)
    content_type = _response_type(request)
    path = {"StudyInstanceUID": request.match_info.get("study", ""),
            "SeriesInstanceUID": request.match_info.get("series", "")}
    try:
        search = parse_search(resource, path, request.query.items())
    except InvalidQuery as error:
        raise BadRequest(str(error)) from None
    rows, warnings = search.page(await request.app[index_key].find(organization_id, search.query,
                                                                   newest_first=True))
    body = json.dumps(search_results(search, rows, dicomweb.base_url), separators=(",", ":")).encode()
    headers = {"Content-Type": content_type}
    if warnings:  # one header, comma-separated (RFC 9111 §5.5), so that proxies pass all of it
        headers["Warning"] = ", ".join(f'299 {dicomweb.base_url} "{_quoted(text)}"' for text in warnings)
    return web.Response(body=body, headers=headers)


def _response_type(request: web.Request) -> str:
    """application/dicom+json, or application/json when that is what the client asks for first; else 406.

    The ``accept`` query parameter stands for the Accept header when given (PS3.18 §8.3.3.1).
    """
    ranges = parse_accept(request.query.get("accept", request.headers.get("Accept")))
    if not accepts_dicom_json(ranges):
        raise NotAcceptable("search results are application/dicom+json (or application/json)")
    first = next(r for r in ranges if r.matches(DICOM_JSON) or r.media_type == _JSON)
    return _JSON if first.media_type == _JSON else DICOM_JSON


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
