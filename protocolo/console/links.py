"""Which console pages a reader may open, read from the pages' own rules.

Navigation and every link a template draws ask :func:`may_follow`: it finds the console
page the link leads to and applies that page's declared permissions (its ``reader``
dependency's scopes, the same ones the page enforces and docs/api.md tabulates) to the
reader's role. So no page offers a link its reader would be refused, and a rule changed on
a page changes its links with it; there is no second table to keep in step.
"""

from __future__ import annotations

import re
from functools import cache

from fastapi.routing import APIRoute

from protocolo.api.identities import Principal
from protocolo.api.permission_table import RouteRule, route_rules
from protocolo.api.roles import Role

from .session import reader, writer


@cache
def _page_rules() -> tuple[tuple[re.Pattern[str], RouteRule], ...]:
    from .mount import ROUTERS  # the routers import the renderer, which imports this module

    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    patterns = {r.path: r.path_regex for r in routes}
    rules = route_rules(routes, {reader: False, writer: False})
    return tuple((patterns[rule.path], rule) for rule in rules if rule.method == "GET")


def page_rule(href: str) -> RouteRule | None:
    """The rule of the console page at ``href`` (a path; query and fragment ignored)."""
    path = href.split("?", 1)[0].split("#", 1)[0]
    for pattern, rule in _page_rules():
        if pattern.match(path):
            return rule
    return None


def may_follow(who: Principal | None, href: str) -> bool:
    """Whether ``who`` may open the page at ``href``. A path that is no console page with a
    rule (login, language, stylesheet) is open to anyone."""
    rule = page_rule(href)
    if rule is None:
        return True
    return who is not None and rule.allows(Role(who.role))


def may_open_page(who: Principal | None, href: str) -> bool:
    """For navigation: a console page with a rule, that ``who`` may open."""
    rule = page_rule(href)
    return who is not None and rule is not None and rule.allows(Role(who.role))
