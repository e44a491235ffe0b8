"""Putting the console on the API's app: its routers and the two answers of its own
(to the login page when there is no valid session; a refusal as a page)."""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from . import catalogue, customer, entry, exports, regulator, staff
from .answers import refusal_text
from .render import language, page
from .session import LoginRequired, Refused

ROUTERS = (entry.router, staff.router, exports.router, regulator.router, customer.router)


def install(app: FastAPI) -> None:
    """After the API's own handlers: input the framework refuses (a field too long) on a
    console route is answered as a page; elsewhere the API's handler answers as before."""
    api_invalid = app.exception_handlers[RequestValidationError]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if not request.url.path.startswith("/console"):
            answer = api_invalid(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "?"
        t = catalogue.translator(language(request))
        return page(request, "refused.html", None, status=422,
                    problem=t("error.field", field=field, message=first.get("msg", "")), back="/console")

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return entry.login_redirect(exc.then)

    @app.exception_handler(Refused)
    async def refusal(request: Request, exc: Refused) -> Response:
        t = catalogue.translator(language(request))
        return page(request, "refused.html", exc.who, status=exc.status, problem=refusal_text(exc, t),
                    back="/console")
