"""Turning a page's data into HTML: the Jinja2 environment and what every page gets
(the catalogue's ``t``, the language, the navigation for the caller's role, the CSRF
token for its forms, times shown in Brasília time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from protocolo.api.identities import Principal
from protocolo.core.cpf import format_cpf
from protocolo.core.protocol_number import LENGTH as PROTOCOL_LENGTH
from protocolo.core.protocol_number import format_protocol_number

from . import catalogue
from .links import may_follow, may_open_page
from .session import CSRF_COOKIE, LANGUAGE_COOKIE

#: Customers and staff in Brazil read local time; the zone is shown next to it.
SHOWN_ZONE = ZoneInfo("America/Sao_Paulo")


@dataclass(frozen=True)
class NavItem:
    key: str
    href: str


#: Shown to a reader only where the page's own rule lets them in (:mod:`.links`).
NAVIGATION = (
    NavItem("nav.search", "/console/search"),
    NavItem("nav.queue", "/console/queue"),
    NavItem("nav.approvals", "/console/approvals"),
    NavItem("nav.exports", "/console/exports"),
    NavItem("nav.documents", "/console/regulator"),
    NavItem("nav.new_request", "/console/my/requests/new"),
    NavItem("nav.my_requests", "/console/my/requests"),
)


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("protocolo.console", "templates"),
                      autoescape=select_autoescape(default=True), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["protocol"] = spoken_protocol
    return env


def spoken_protocol(value: Any) -> Any:
    """A protocol number grouped as people read it aloud (``2026 00000 00001 6``), wherever a
    person reads one; links and forms keep the 15 digits. Anything else is shown as it is."""
    if isinstance(value, str) and len(value) == PROTOCOL_LENGTH and value.isdigit() and value.isascii():
        return format_protocol_number(value)
    return value


def language(request: Request) -> str:
    return catalogue.language_of(request.cookies.get(LANGUAGE_COOKIE))


def when(value: Any, lang: str) -> str:
    """A moment in Brasília time, day first in Portuguese."""
    if value is None or value == "":
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    local = moment.astimezone(SHOWN_ZONE)
    return local.strftime("%d/%m/%Y %H:%M" if lang == "pt" else "%Y-%m-%d %H:%M") + f" ({local.tzname()})"


def seconds_left(due: Any) -> int | None:
    """Seconds until a deadline (negative: past it); the SLA countdown of a request."""
    if due is None or due == "":
        return None
    moment = due if isinstance(due, datetime) else datetime.fromisoformat(str(due))
    return int((moment - datetime.now(UTC)).total_seconds())


def navigation(who: Principal | None) -> list[NavItem]:
    return [n for n in NAVIGATION if may_open_page(who, n.href)]


def page(request: Request, template: str, who: Principal | None, *, status: int = 200,
         **values: Any) -> HTMLResponse:
    lang = language(request)
    t = catalogue.translator(lang)
    html = environment().get_template(template).render(
        t=t, lang=lang, languages=catalogue.LANGUAGE_NAMES, who=who, nav=navigation(who),
        here=request.url.path, may=lambda href: may_follow(who, href), csrf=request.cookies.get(CSRF_COOKIE, ""),
        when=lambda v: when(v, lang), span=lambda s: catalogue.span(int(s), t), left=seconds_left, cpf=format_cpf, **values)
    return HTMLResponse(html, status_code=status,
                        headers={"Content-Language": "pt-BR" if lang == "pt" else "en",
                                 "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                                                            "form-action 'self'",
                                 "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"})
