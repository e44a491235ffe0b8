"""The permission model as tables, read from the code: which permissions each role holds
(``roles.ROLE_PERMISSIONS``) and which each route requires (its ``Security`` dependency:
every listed permission, or "any of" for ``principal_any_of``).

docs/api.md carries both tables between markers and a test compares them with the
served application's (``protocolo.permission_docs``, which adds the console's checkers);
regenerate with ``python -m protocolo.permission_docs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from .roles import ROLE_PERMISSIONS, Permission, Role

BEGIN = "<!-- permission-table:begin (python -m protocolo.permission_docs) -->"
END = "<!-- permission-table:end -->"


@dataclass(frozen=True)
class RouteRule:
    method: str
    path: str
    permissions: tuple[Permission, ...]  # empty: any authenticated user
    any_of: bool

    def allows(self, role: Role) -> bool:
        held = [p in ROLE_PERMISSIONS[role] for p in self.permissions]
        return any(held) if self.any_of else all(held)


def api_checkers() -> dict[Callable[..., Any], bool]:
    """The API's dependencies that check a caller -> whether they mean "any of"."""
    from .auth import principal, principal_any_of
    return {principal: False, principal_any_of: True}


def _rule_of(dependant: Dependant, checkers: dict[Callable[..., Any], bool]) -> tuple[tuple[Permission, ...], bool] | None:
    for dep in dependant.dependencies:
        if dep.call in checkers:
            return tuple(Permission(s) for s in dep.own_oauth_scopes or ()), checkers[dep.call]
        found = _rule_of(dep, checkers)
        if found is not None:
            return found
    return None


def route_rules(routes: Iterable[Any], checkers: dict[Callable[..., Any], bool] | None = None) -> list[RouteRule]:
    """Every authenticated route's rule (``checkers``: the caller-checking dependencies,
    the API's by default), sorted by path then method."""
    checkers = checkers if checkers is not None else api_checkers()
    rules = []
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        found = _rule_of(route.dependant, checkers)
        if found is None:
            continue
        for method in sorted(route.methods or ()):
            rules.append(RouteRule(method, route.path, *found))
    return sorted(rules, key=lambda r: (r.path, r.method))


def roles_markdown() -> str:
    roles = list(Role)
    lines = ["| permission | " + " | ".join(r.value for r in roles) + " |",
             "| --- |" + " :-: |" * len(roles)]
    for p in Permission:
        lines.append(f"| `{p.value}` | " + " | ".join("✓" if p in ROLE_PERMISSIONS[r] else "" for r in roles)
                     + " |")
    return "\n".join(lines)


def routes_markdown(rules: Iterable[RouteRule]) -> str:
    lines = ["| route | requires | roles |", "| --- | --- | --- |"]
    for r in rules:
        needs = ("any signed-in user" if not r.permissions else
                 ("any of " if r.any_of and len(r.permissions) > 1 else "")
                 + ", ".join(f"`{p.value}`" for p in r.permissions))
        roles = ", ".join(role.value for role in Role if r.allows(role)) or "-"
        lines.append(f"| `{r.method} {r.path}` | {needs} | {roles} |")
    return "\n".join(lines)


def markdown(routes: Iterable[Any], checkers: dict[Callable[..., Any], bool] | None = None) -> str:
    rules = route_rules(routes, checkers)
    return "\n\n".join([BEGIN, roles_markdown(), routes_markdown(rules), END])
