"""Getting in and out: the login page, log out, the home redirect, the language switch
and the stylesheet. Login and logout are the API's own (:mod:`protocolo.api.routes.sessions`):
same rate limit, same session, same revocation."""

from __future__ import annotations

from importlib import resources
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response, Security
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from protocolo.api import identities
from protocolo.api.auth import SESSION_COOKIE, Services
from protocolo.api.identities import Principal
from protocolo.api.routes import sessions

from . import catalogue
from .answers import notice, safe_target, see_other
from .render import language, navigation, page
from .session import CSRF_COOKIE, LANGUAGE_COOKIE, reader, writer

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, then: Annotated[str, Query(max_length=500)] = "/console",
               note: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    return page(request, "login.html", None, then=safe_target(then), notice=notice(note), problem=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, svc: Services,
          name: Annotated[str, Form(max_length=200)] = "",
          password: Annotated[str, Form(max_length=400)] = "",
          then: Annotated[str, Form(max_length=500)] = "/console") -> Response:
    t = catalogue.translator(language(request))
    target = safe_target(then)
    issued = Response()
    try:
        out = sessions.login(sessions.Login(name=name, password=password), request, issued, svc)
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0].get("loc", ()))
        return page(request, "login.html", None, status=422, then=target, notice=None,
                    problem=t("error.field", field=t(f"login.{field}") if field in ("name", "password") else field,
                              message=exc.errors()[0].get("msg", "")))
    except HTTPException as exc:
        if exc.status_code == 429:
            seconds = (exc.headers or {}).get("Retry-After", "60")
            return page(request, "login.html", None, status=429, then=target, notice=None,
                        problem=t("login.too_many", seconds=seconds))
        return page(request, "login.html", None, status=exc.status_code, then=target, notice=None,
                    problem=t("login.wrong"))
    answer = see_other(target)
    answer.raw_headers.extend((k, v) for k, v in issued.raw_headers if k == b"set-cookie")
    answer.set_cookie(CSRF_COOKIE, out.csrf_token, max_age=identities.SESSION_HOURS * 3600,
                      secure=svc.secure_cookies, httponly=True, samesite="strict", path="/console")
    return answer


@router.post("/logout")
def logout(svc: Services, who: Annotated[Principal, Security(writer)]) -> Response:
    sessions.logout(Response(), svc, who)
    answer = see_other("/console/login?note=logout.done")
    answer.delete_cookie(SESSION_COOKIE, path="/")
    answer.delete_cookie(CSRF_COOKIE, path="/console")
    return answer


@router.get("", response_class=HTMLResponse)
def home(request: Request, who: Annotated[Principal, Security(reader)]) -> Response:
    """The first page the caller's role may see."""
    places = navigation(who)
    if places:
        return see_other(places[0].href)
    return page(request, "home.html", who)


@router.get("/language")
def choose_language(lang: Annotated[str, Query(max_length=5)] = catalogue.DEFAULT_LANGUAGE,
                    then: Annotated[str, Query(max_length=500)] = "/console") -> Response:
    answer = see_other(safe_target(then))
    answer.set_cookie(LANGUAGE_COOKIE, catalogue.language_of(lang), max_age=365 * 86_400,
                      samesite="lax", path="/console")
    return answer


@router.get("/static/console.css")
def stylesheet() -> Response:
    css = resources.files("protocolo.console").joinpath("static/console.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


def login_redirect(then: str) -> Response:
    return see_other(f"/console/login?then={quote(safe_target(then))}&note=login.required")
