"""The served application: the HTTP API with the dispute console mounted on it.

The composition root assembles the two so that neither imports the other's assembly: the
console builds on the API's pieces (identities, roles, inputs, routes' decisions), and the
API knows nothing of the console. ``/`` leads people to the console; machines start from
``/openapi.json``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from protocolo.api import app as api
from protocolo.api.services import ApiServices
from protocolo.console import mount as console

#: Every router served: the authorization matrix test walks the routes they define.
ROUTERS = (*api.ROUTERS, *console.ROUTERS)


def create_app(services: ApiServices | None = None) -> FastAPI:
    """The API (``protocolo.api.app.create_app``) with the console's routes and answers."""
    app = api.create_app(services)
    console.install(app)
    for router in console.ROUTERS:
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console", status_code=303)

    return app
