"""Who is using the console: the API's own rule (:func:`protocolo.api.auth.authorize`).

The console's forms carry the session's CSRF token in a hidden ``csrf_token`` field (a
cross-site form can send the cookie, never the token: it cannot read the page). The token
was handed out once by the API's login; the console keeps it in its own HttpOnly,
SameSite=Strict cookie to write it into its forms, and it is checked against the hash
stored with the session, exactly like the API's ``X-CSRF-Token`` header.

A caller without a valid credential is sent to the login page (303); a role without the
permission gets the console's 403 page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, SecurityScopes

from protocolo.api import identities
from protocolo.api.auth import Services, authorize, bearer_scheme, session_scheme
from protocolo.api.identities import Principal
from protocolo.api.roles import Permission

CSRF_COOKIE = "protocolo_csrf"
CSRF_FIELD = "csrf_token"
LANGUAGE_COOKIE = "protocolo_lang"


class LoginRequired(Exception):
    """No credential, or an unknown, expired or revoked one: go to the login page."""

    def __init__(self, then: str) -> None:
        super().__init__(then)
        self.then = then


class Refused(Exception):
    """A 4xx the console shows as a page (403: role or CSRF; 404), in the reader's language
    and inside the normal layout: ``who`` is the signed-in reader (their navigation)."""

    def __init__(self, status: int, message: str, who: Principal | None = None,
                 needed: tuple[Permission, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.who = who
        self.needed = needed


def _checked(request: Request, svc: Services, scopes: SecurityScopes,
             bearer: HTTPAuthorizationCredentials | None, session: str | None, csrf: str | None) -> Principal:
    needed = [Permission(s) for s in scopes.scopes]
    credential = bearer.credentials if bearer is not None else None
    try:
        return authorize(svc, request, credential, session, csrf, needed)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise LoginRequired(request.url.path) from None
        raise Refused(exc.status_code, str(exc.detail), _signed_in(svc, credential, session),
                      tuple(needed)) from None


def _signed_in(svc: Services, token: str | None, session: str | None) -> Principal | None:
    """Who was refused (they are signed in: only their role or CSRF token fell short)."""
    with svc.registry.connection() as conn:
        if token is not None:
            return identities.authenticate(conn, token, "token")
        return identities.authenticate(conn, session, "session") if session is not None else None


def reader(
    security_scopes: SecurityScopes, request: Request, svc: Services,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session: Annotated[str | None, Depends(session_scheme)],
) -> Principal:
    """For pages (GET): no CSRF token involved."""
    return _checked(request, svc, security_scopes, bearer, session, None)


def writer(
    security_scopes: SecurityScopes, request: Request, svc: Services,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session: Annotated[str | None, Depends(session_scheme)],
    csrf_token: Annotated[str | None, Form(max_length=200)] = None,
) -> Principal:
    """For form posts: a session must send its CSRF token in the ``csrf_token`` field."""
    return _checked(request, svc, security_scopes, bearer, session, csrf_token)
