"""Console sessions: log in (rate limited), log out, who am I."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response, Security
from pydantic import BaseModel, ConfigDict, Field

from .. import identities, inputs
from ..auth import SESSION_COOKIE, Services, check_same_origin, client_address, principal
from ..identities import Principal
from ..roles import ROLE_PERMISSIONS

router = APIRouter(prefix="/v1", tags=["sessions"])


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=inputs.NO_NUL)
    password: str = Field(min_length=1, max_length=200)


class SessionOut(BaseModel):
    user_name: str
    role: str
    csrf_token: str
    expires_at: datetime


class Me(BaseModel):
    user_name: str
    role: str
    permissions: list[str]


@router.post("/auth/login", response_model=SessionOut, summary="Log in (sets the session cookie)")
def login(body: Login, request: Request, response: Response, svc: Services) -> SessionOut:
    """Sets ``protocolo_session`` (Secure, HttpOnly, SameSite=Strict) and returns the CSRF
    token the console sends in ``X-CSRF-Token`` with every unsafe request. A browser's
    cross-site POST is refused (login CSRF: ``auth.check_same_origin``)."""
    check_same_origin(request)
    wait = svc.login_limit.take(client_address(request) or "?")
    if wait:
        raise HTTPException(429, f"too many login attempts; try again in {wait:.0f} s",
                            headers={"Retry-After": str(max(int(wait), 1))})
    with svc.registry.connection() as conn:
        if not identities.check_password(conn, body.name, body.password):
            raise HTTPException(401, "wrong user name or password")
        row = conn.execute("SELECT role FROM api_users WHERE user_name = %s", (body.name,)).fetchone()
        issued = identities.issue(conn, body.name, "session", timedelta(hours=identities.SESSION_HOURS))
    assert row is not None and issued.csrf_token is not None
    response.set_cookie(SESSION_COOKIE, issued.credential, max_age=identities.SESSION_HOURS * 3600,
                        secure=svc.secure_cookies, httponly=True, samesite="strict", path="/")
    return SessionOut(user_name=body.name, role=row[0], csrf_token=issued.csrf_token, expires_at=issued.expires_at)


@router.post("/auth/logout", status_code=204, summary="Log out (revokes the session)")
def logout(response: Response, svc: Services, who: Annotated[Principal, Security(principal)]) -> None:
    if who.via_session and who.credential_id:
        with svc.registry.connection() as conn:
            identities.revoke(conn, who.credential_id)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/me", response_model=Me, summary="Who am I")
def me(who: Annotated[Principal, Security(principal)]) -> Me:
    return Me(user_name=who.user_name, role=who.role.value,
              permissions=sorted(p.value for p in ROLE_PERMISSIONS[who.role]))
