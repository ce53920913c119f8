"""Signing in and out of the console, and its stylesheet.

`GET /crm/login` shows the form; `POST /crm/login` takes the crm key once (a storefront or
admin key is refused), sets the session cookie and goes on to the page asked for;
`POST /crm/logout` clears it. The key travels only in the posted form body: never in a URL,
a page or a log line.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from serving.crm.console import ConsoleDep, SignedInDep, posted_form, safe_next
from serving.crm.pages import STATIC, render, secure
from serving.crm.session import CSRF_FIELD, check_csrf

logger = logging.getLogger("patronage.serving")

router = APIRouter(include_in_schema=False)


def _sign_in_page(
    request: Request, console: ConsoleDep, message: str, next_path: str, status: int
) -> Response:
    token = console.sessions.new_form_token()
    response = render(
        request,
        "login.html",
        {"csrf_token": token, "message": message, "next_path": next_path},
        status=status,
    )
    console.sessions.set_sign_in_cookie(request, response, token)
    return response


@router.get("/crm/login")
async def sign_in_form(request: Request, console: ConsoleDep) -> Response:
    """The sign-in form (with a fresh CSRF token)."""
    next_path = safe_next(request.query_params.get("next"))
    return _sign_in_page(request, console, "", next_path, 200)


@router.post("/crm/login")
async def sign_in(request: Request, console: ConsoleDep) -> Response:
    """Check the CSRF token and the key; on success set the session and go on (303)."""
    form = await posted_form(request)
    console.sessions.check_sign_in_form(request, form.get(CSRF_FIELD, ""))
    next_path = safe_next(form.get("next"))
    refusal = console.sessions.check_key(form.get("api_key", "").strip())
    if refusal is not None:
        logger.info("CRM console: sign-in refused (%s)", refusal)
        return _sign_in_page(request, console, refusal, next_path, 401)
    response = RedirectResponse(next_path, status_code=303)
    console.sessions.sign_in(response, request, form.get("api_key", "").strip())
    return secure(response)


@router.post("/crm/logout")
async def sign_out(request: Request, console: ConsoleDep, session: SignedInDep) -> Response:
    """Check the CSRF token, clear the session, back to the sign-in page (303)."""
    form = await posted_form(request)
    check_csrf(session, form.get(CSRF_FIELD, ""))
    response = RedirectResponse("/crm/login", status_code=303)
    console.sessions.sign_out(response)
    return secure(response)


STATIC_FILES = {"console.css": "text/css", "favicon.svg": "image/svg+xml"}
"""The console's only assets: its stylesheet and its icon (nothing from another site)."""


@router.get("/crm/static/{name}")
async def static_file(name: str) -> Response:
    """One of `STATIC_FILES` (404 for any other name)."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return secure(Response("not found", 404, media_type="text/plain"))
    response = FileResponse(STATIC / name, media_type=media_type)
    response.headers["Cache-Control"] = "max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/favicon.ico")
async def favicon() -> Response:
    """The console's icon where browsers look for it on pages without a link to it (the
    training report); open, like `/health/live`: it is a picture, not data."""
    return await static_file("favicon.svg")
