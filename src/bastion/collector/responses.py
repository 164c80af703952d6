"""The error answers the API documents in its OpenAPI (every error is ``{"error": {"message"}}``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


_WHY = {
    400: "The request is malformed: the message names the parameter or field and its value.",
    401: "No credential, or an unknown one (Authorization: Bearer <token>).",
    403: "The credential's role may not do this (agent keys may only export their own spans).",
    404: "No such record.",
    409: "The record is not in a state that allows this (already decided or delivered).",
    413: "The body is larger than the route accepts.",
    415: "The Content-Type is not supported.",
    503: "The store or the operators file cannot be read now; retry later.",
}
# What every authenticated route may answer.
COMMON = (400, 401, 403, 413, 503)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses."""
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}
