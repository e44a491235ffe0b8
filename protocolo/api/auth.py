"""Who is calling, and may they: FastAPI security dependencies.

Two ways to present a credential:

* ``Authorization: Bearer <token>``: API tokens (``protocolo user add``), for programs.
* the ``protocolo_session`` cookie (Secure, HttpOnly, SameSite=Strict) set by
  ``POST /v1/auth/login``, for the console; every unsafe method (POST, ...) then also
  needs the session's CSRF token in the ``X-CSRF-Token`` header (synchroniser token: a
  cross-site form can send the cookie, never the header).

Routes declare the permissions they need with ``Security(principal, scopes=[...])``
(FastAPI's OAuth2-scopes mechanism): the caller's role must hold EVERY listed permission,
so listing one more can only narrow access. A route that accepts alternatives says so by
its dependency, ``Security(principal_any_of, scopes=[...])``, and then narrows what a
weaker permission sees (a customer: their own requests). ``permission_table`` reads both
from the routes; docs/api.md's tables are tested against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from . import identities
from .identities import Principal
from .roles import Permission, allows
from .secrets import check_secret
from .services import ApiServices

SESSION_COOKIE = "protocolo_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `protocolo user add`.")
session_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                              description="Console session from POST /v1/auth/login; unsafe methods also "
                                          f"need the {CSRF_HEADER} header.")


def services(request: Request) -> ApiServices:
    found: ApiServices = request.app.state.services
    return found


Services = Annotated[ApiServices, Depends(services)]


def unauthenticated(detail: str = "authentication required: a Bearer token or a session") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


#: The two credentials a route's caller may present (the OpenAPI document's security schemes).
BearerToken = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
SessionCookie = Annotated[str | None, Depends(session_scheme)]


def principal(security_scopes: SecurityScopes, request: Request, svc: Services, bearer: BearerToken,
              session: SessionCookie) -> Principal:
    """The caller, whose role holds every permission the route lists."""
    return _authorize_route(security_scopes, request, svc, bearer, session, any_of=False)


def principal_any_of(security_scopes: SecurityScopes, request: Request, svc: Services, bearer: BearerToken,
                     session: SessionCookie) -> Principal:
    """The caller, whose role holds at least one of the permissions the route lists (the
    route then narrows what each permission sees)."""
    return _authorize_route(security_scopes, request, svc, bearer, session, any_of=True)


def _authorize_route(security_scopes: SecurityScopes, request: Request, svc: ApiServices,
                     bearer: HTTPAuthorizationCredentials | None, session: str | None, *,
                     any_of: bool) -> Principal:
    """:func:`authorize` with what a route's dependency receives: the permissions it lists,
    the bearer token, the session cookie and the CSRF header. The two dependencies differ
    only in ``any_of``; they stay two functions because the routes name their rule by
    which one they depend on (``permission_table``)."""
    return authorize(svc, request, bearer.credentials if bearer is not None else None, session,
                     request.headers.get(CSRF_HEADER), [Permission(s) for s in security_scopes.scopes],
                     any_of=any_of)


def authorize(svc: ApiServices, request: Request, token: str | None, session: str | None, csrf: str | None,
              needed: Sequence[Permission], *, any_of: bool = False) -> Principal:
    """The one rule for every caller, API or console: a token, else a session (whose unsafe
    requests must carry its CSRF token: a header for the API, a form field for the console),
    holding every permission of ``needed`` (``any_of``: one of them). Raises 401 or 403."""
    if token is not None:
        credential, kind = token, "token"
    elif session is not None:
        credential, kind = session, "session"
    else:
        raise unauthenticated()
    with svc.registry.connection() as conn:
        who = identities.authenticate(conn, credential, kind)
    if who is None:
        raise unauthenticated("the credential is unknown, expired or revoked")
    if who.via_session and request.method not in _SAFE_METHODS and (
            not csrf or who.csrf_hash is None or not check_secret(csrf, who.csrf_hash)):
        raise HTTPException(403, f"{CSRF_HEADER}: missing or wrong CSRF token [rule: csrf]")
    held = [allows(who.role, p) for p in needed]
    if needed and not (any(held) if any_of else all(held)):
        raise HTTPException(403, f"role {who.role.value} may not do this (needs {'one' if any_of else 'each'} of: "
                                 f"{', '.join(p.value for p in needed)}) [rule: role]")
    return who


def client_address(request: Request) -> str | None:
    """The socket's peer; X-Forwarded-For counts only from PROTOCOLO_TRUSTED_PROXIES (uvicorn's
    proxy-headers handling, configured by ``server.server``), never from anyone else."""
    return request.client.host if request.client else None


#: What a browser says of a request from the page's own site (Fetch Metadata), or of one
#: the user typed (``none``).
_OWN_SITE = frozenset({"same-origin", "none"})


def check_same_origin(request: Request) -> None:
    """Login CSRF: a browser's cross-site POST to a login route is refused (403). Checked by
    Fetch Metadata (``Sec-Fetch-Site``) and ``Origin`` (its host must be the request's own
    ``Host``); a program sending neither (curl, the CLI) is not a browser and passes."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    foreign_origin = origin is not None and origin.partition("://")[2].rstrip("/") != request.headers.get("host", "")
    if (site is not None and site not in _OWN_SITE) or foreign_origin:
        raise HTTPException(403, "a login must come from this site's own pages [rule: login-csrf]")
