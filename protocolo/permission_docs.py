"""docs/api.md's permission tables for the served application (API and console): which
permissions each role holds, which each route requires. ``python -m protocolo.permission_docs``
prints them; a test compares them with the docs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocolo.api import permission_table
from protocolo.app_assembly import ROUTERS
from protocolo.console import session


def checkers() -> dict[Callable[..., Any], bool]:
    """The API's caller checks and the console's (pages and forms: every listed permission)."""
    return {**permission_table.api_checkers(), session.reader: False, session.writer: False}


def route_rules() -> list[permission_table.RouteRule]:
    return permission_table.route_rules((r for router in ROUTERS for r in router.routes), checkers())


def markdown() -> str:
    return permission_table.markdown((r for router in ROUTERS for r in router.routes), checkers())


if __name__ == "__main__":
    print(markdown())
