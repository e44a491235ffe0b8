"""The HTTP API's application factory (the console is mounted on it by the composition
root, ``protocolo.app_assembly``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from . import problems
from .routes import (
    access_log,
    approvals,
    contacts,
    customer_proof,
    events,
    holds,
    operations,
    requests,
    sessions,
)
from .services import ApiServices

API_VERSION = "1.0.0"

#: Every router of the API (the served app adds the console's: protocolo.app_assembly).
ROUTERS = (operations.router, sessions.router, contacts.router, holds.router, requests.router,
           approvals.router, access_log.router, events.router, customer_proof.router)


async def _masked(request: Request, response: Response) -> Response:
    """An error body with the personal data it might echo masked (problems.mask_personal_data)."""
    chunks = [chunk async for chunk in response.body_iterator]  # type: ignore[attr-defined]
    body = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks).decode("utf-8", "replace")
    codes = [v for k, v in request.query_params.multi_items() if k == "customer_code"]
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(problems.mask_personal_data(body, codes), status_code=response.status_code, headers=headers,
                    media_type="application/json")


def create_app(services: ApiServices | None = None) -> FastAPI:
    """The API; ``services`` may be set later on ``app.state.services`` (for the OpenAPI
    document, which needs no backend)."""
    app = FastAPI(
        title="Protocolo",
        version=API_VERSION,
        summary="The audit ledger of customer-service contacts: search, timelines, retrieval "
                "requests, legal holds, two-person approvals and the access audit.",
        responses=problems.COMMON_RESPONSES,
    )
    app.state.services = services
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(psycopg.DataError)
    async def not_storable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # The last line of defence: inputs are checked field by field before any query.
        return JSONResponse(status_code=422, content=problems.rejection_body(
            "request", "not-storable", "a value PostgreSQL cannot hold (a NUL character?)"))

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": "PostgreSQL did not answer"})

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        svc: ApiServices | None = request.app.state.services
        if svc is not None:
            svc.metrics.observe(request.method, path, response.status_code, time.perf_counter() - started)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
            return await _masked(request, response)
        return response

    return app
