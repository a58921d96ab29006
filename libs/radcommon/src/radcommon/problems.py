"""HTTP errors as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_JSON = "application/problem+json"


class Problem(web.HTTPException):
    """An error answered as a problem document; subclasses fix the status."""

    status_code = 500
    title = "Internal Server Error"

    def __init__(self, detail: str | None = None, *, type_: str = "about:blank", **extensions: Any) -> None:
        super().__init__(content_type=PROBLEM_JSON)
        self.detail = detail
        self.text = json.dumps(problem_document(self.status_code, self.title, detail, type_, **extensions))


class BadRequest(Problem):
    status_code, title = 400, "Bad Request"


class Unauthorized(Problem):
    """No valid credentials. RFC 9110 section 15.5.2: a 401 always says how to authenticate."""

    status_code, title = 401, "Unauthorized"

    def __init__(self, detail: str | None = None, *, www_authenticate: str = 'Bearer realm="telerad"',
                 **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["WWW-Authenticate"] = www_authenticate


class Forbidden(Problem):
    status_code, title = 403, "Forbidden"


class NotFound(Problem):
    status_code, title = 404, "Not Found"


class Conflict(Problem):
    status_code, title = 409, "Conflict"


class UnprocessableContent(Problem):
    status_code, title = 422, "Unprocessable Content"


class BadGateway(Problem):
    status_code, title = 502, "Bad Gateway"


class ServiceUnavailable(Problem):
    status_code, title = 503, "Service Unavailable"


def problem_document(status: int, title: str, detail: str | None = None, type_: str = "about:blank",
                     **extensions: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        document["detail"] = detail
    document.update(extensions)
    return document
