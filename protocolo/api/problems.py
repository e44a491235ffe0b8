"""Error responses: bad input names the field and the rule, like EventRejected.

Every 4xx body has ``detail``; input errors (422) keep FastAPI's documented shape
(``detail``: a list of ``{loc, msg, type}``) and add ``field`` and ``rule`` for the first
one, where ``type`` is the rule. A rejection by the contract (the publisher's
:class:`EventRejected`) is answered the same way, before anything is published.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from protocolo.core.errors import EventRejected, shown_value
from protocolo.core.personal_data import PersonalDataUnavailable
from protocolo.core.watermark import ProjectionBehind
from protocolo.producers.publisher import PublishFailed


class Problem(BaseModel):
    detail: str


#: Answers any protected route may give, documented once for every route.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No credential, or an unknown, expired or revoked one."},
    403: {"model": Problem, "description": "The role may not do this (or a missing CSRF token)."},
    429: {"model": Problem, "description": "Rate limited; Retry-After says when to try again."},
    503: {"model": Problem, "description": "Kafka or PostgreSQL did not answer."},
}


#: What looks like a CPF anywhere in an error body: 11 digits, bare or punctuated, not part
#: of a longer number (a protocol number has 15 digits, an offset is not punctuated so).
_CPF_LIKE = re.compile(r"(?<![\d.])\d{3}[.\s]?\d{3}[.\s]?\d{3}[-\s]?\d{2}(?![\d-])")


def mask_personal_data(text: str, also: Iterable[str] = ()) -> str:
    """``text`` (an error body) with every CPF-looking value and every value of ``also``
    (the customer codes the request named) masked, wherever they appear: messages, field
    names, echoed path ids. The last line of defence: messages already use
    ``shown_value`` for what they quote."""
    for value in sorted({v for v in also if len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, "*" * len(value))
    return _CPF_LIKE.sub(lambda m: re.sub(r"\d", "*", m.group(0)[:-2]) + m.group(0)[-2:], text)


def rejection_body(field: str, rule: str, message: str, where: str = "") -> dict[str, Any]:
    loc = [where, *field.split(".")] if where else field.split(".")
    return {"detail": [{"loc": loc, "msg": message, "type": rule}], "field": field, "rule": rule}


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts[1:] if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "cookie")
                    else parts)


def _shown_loc(error: Any) -> list[Any]:
    """An error's location; a name the caller made up (an unexpected field: it could be a
    CPF or a customer code) is shown masked like any rejected value."""
    loc = list(error.get("loc", ()))
    if error.get("type") == "extra_forbidden" and loc and isinstance(loc[-1], str):
        loc[-1] = shown_value(loc[-1]).strip("'")
    return loc


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": _shown_loc(e), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "type": "invalid"}
        return JSONResponse(status_code=422, content={
            "detail": errors, "field": _field_of(first["loc"]), "rule": first["type"]})

    @app.exception_handler(EventRejected)
    async def rejected(request: Request, exc: EventRejected) -> JSONResponse:
        return JSONResponse(status_code=422, content=rejection_body(exc.field, exc.rule, exc.detail))

    @app.exception_handler(PublishFailed)
    async def not_published(request: Request, exc: PublishFailed) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"the ledger did not take the event: {exc}"})

    @app.exception_handler(ProjectionBehind)
    async def behind(request: Request, exc: ProjectionBehind) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(PersonalDataUnavailable)
    async def unreadable(request: Request, exc: PersonalDataUnavailable) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})
