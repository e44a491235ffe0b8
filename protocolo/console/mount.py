"""Putting the console on the API's app: its routers and the two answers of its own
(to the login page when there is no valid session; a refusal as a page)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from . import customer, entry, staff
from .render import page
from .session import LoginRequired, Refused

ROUTERS = (entry.router, staff.router, customer.router)


def install(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return entry.login_redirect(exc.then)

    @app.exception_handler(Refused)
    async def refusal(request: Request, exc: Refused) -> Response:
        return page(request, "refused.html", None, status=exc.status, problem=exc.message, back="/console")
