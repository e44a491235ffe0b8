"""What the console answers when the API's code refuses: a page with one clear message
naming the field and the rule (the API's own wording), never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from protocolo.api.identities import Principal
from protocolo.core.errors import EventRejected

from . import catalogue
from .render import language, page
from .session import Refused

#: Refusals the console turns into a page; anything else (503: Kafka or PostgreSQL down)
#: goes to the API's own handlers.
REFUSALS = (EventRejected, ValidationError, HTTPException)

#: Notices a page may show after a redirect (``?notice=``): keys of the catalogue only.
NOTICES = frozenset({"logout.done", "login.required", "contact.deletion_asked", "approvals.granted",
                     "approvals.denied", "customer.created"})


def message(exc: Exception, t: Callable[..., str]) -> tuple[int, str]:
    """The status and the text of a refusal."""
    if isinstance(exc, EventRejected):
        return 422, t("error.field", field=exc.field, message=exc.detail)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "?"
        return 422, t("error.field", field=field, message=first.get("msg", ""))
    if isinstance(exc, HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return exc.status_code, _status_text(exc.status_code, detail, t)
    raise exc


def _status_text(status: int, detail: str, t: Callable[..., str]) -> str:
    """A refusal in the page's language; the API's own (English) wording follows only where
    it names something the reader needs (which contact, which state)."""
    if status == 403 and "[rule: self-approval]" in detail:
        return t("approvals.self")
    if status == 403 and "[rule: csrf]" in detail:
        return t("error.csrf")
    if status == 403:
        return t("error.forbidden")
    if status == 404:
        return t("error.not_found")
    if status == 409:
        return f"{t('error.conflict')} ({detail})"
    return detail


def refusal_text(exc: Refused, t: Callable[..., str]) -> str:
    """A page refused by its rule, before any of it ran: which role, which permission."""
    if exc.status == 403 and "[rule: role]" in exc.message and exc.who is not None:
        return t("error.forbidden_role", role=t("role." + exc.who.role.value),
                 needs=", ".join(p.value for p in exc.needed))
    return _status_text(exc.status, exc.message, t)


def refused(request: Request, who: Principal | None, exc: Exception, back: str | None = None) -> HTMLResponse:
    status, text = message(exc, catalogue.translator(language(request)))
    return page(request, "refused.html", who, status=status, problem=text, back=back)


def notice(key: str | None) -> str | None:
    return key if key in NOTICES else None


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_target(then: str | None, default: str = "/console") -> str:
    """Only a console path: never another site (an open redirect)."""
    if then and then.startswith("/console") and not then.startswith("//") and "\\" not in then:
        return then
    return default


def blank(value: Any) -> Any:
    """A form's empty field means "not given"."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value
