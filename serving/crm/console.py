"""The console's state on the app, its typed dependencies, and how its refusals are answered.

`install_console(app, services)` mounts every `/crm/...` page. Every page but sign-in depends
on `SignedInDep`: without a valid session cookie the browser is sent to `/crm/login` (303),
with the page it wanted kept as `next` (a path under `/crm/` only: never another site). A
posted form without its CSRF token answers 403. A page that shows the served models
(`ServedModelsDep`) answers 503 saying they are loading before the first load. None of these
routes is in the OpenAPI document: they are pages for people, not API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from serving.crm.customer_frame import CustomerFrame, FrameCache
from serving.crm.pages import render, secure
from serving.crm.registry_view import RegistryListing
from serving.crm.session import (
    ConsoleSession,
    ConsoleSessions,
    CsrfRejected,
    SignInRequired,
)
from serving.crm.shop_history import HistoryCache, ShopHistory
from serving.deps import Services
from serving.model_store import ServingModels

T = TypeVar("T")
SIGN_IN_PATH = "/crm/login"
MAX_FORM_BYTES = 16 * 1024
"""A console form is a few fields; a larger body is refused before it is parsed."""


@dataclass
class Console:
    """Everything the console's pages share, one per app (`app.state.console`)."""

    services: Services
    sessions: ConsoleSessions
    frames: FrameCache = field(default_factory=FrameCache)
    histories: HistoryCache = field(default_factory=HistoryCache)
    registry: RegistryListing | None = None
    _cache: dict[str, Any] = field(default_factory=dict)
    _cached_of: ServingModels | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def models(self) -> ServingModels | None:
        """The snapshot being served, or None before the first load."""
        return self.services.store.current

    async def frame(self, models: ServingModels) -> CustomerFrame:
        """The customer frame of `models` (built in a worker thread on first use)."""
        return await run_in_threadpool(self.frames.frame, models)

    async def history(self, models: ServingModels) -> ShopHistory:
        """The shop's orders and feedback (loaded in a worker thread on first use); raises
        `HistoryUnavailable` saying why not."""
        return await run_in_threadpool(
            self.histories.history, models, self.services.settings.crm_data_dir
        )

    async def cached(self, models: ServingModels, name: str, compute: Callable[[], T]) -> T:
        """`compute()` for the served snapshot (a chart, a table), run once in a worker thread
        and kept until the snapshot changes."""
        with self._lock:
            if self._cached_of is not models:
                self._cache, self._cached_of = {}, models
            kept = self._cache.get(name, _MISSING)
        if kept is not _MISSING:
            return kept  # type: ignore[no-any-return]
        value = await run_in_threadpool(compute)
        with self._lock:
            if self._cached_of is models:
                self._cache[name] = value
        return value


_MISSING = object()


def get_console(request: Request) -> Console:
    """The app's console."""
    console: Console = request.app.state.console
    return console


def signed_in(request: Request) -> ConsoleSession:
    """The marketer's session; raises `SignInRequired` (answered with a redirect) without one."""
    return get_console(request).sessions.session(request)


ConsoleDep = Annotated[Console, Depends(get_console)]
SignedInDep = Annotated[ConsoleSession, Depends(signed_in)]


class ModelsNotLoaded(Exception):
    """A page needs the served models before the first load (answered with the 503 page)."""

    def __init__(self, session: ConsoleSession) -> None:
        super().__init__("the shop's models are not loaded yet")
        self.session = session


async def served_models(request: Request, session: SignedInDep) -> ServingModels:
    """The snapshot being served to a signed-in marketer; raises `ModelsNotLoaded` (answered
    with the 503 page) before the first load. The sign-in check comes first."""
    models = get_console(request).models()
    if models is None:
        raise ModelsNotLoaded(session)
    return models


ServedModelsDep = Annotated[ServingModels, Depends(served_models)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path under `/crm/` of this site, else the overview."""
    if (
        not target
        or not (target == "/crm" or target.startswith(("/crm/", "/crm?")))
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or target.startswith(SIGN_IN_PATH)
    ):
        return "/crm/"
    return target


async def posted_form(request: Request) -> dict[str, str]:
    """The fields of a posted `application/x-www-form-urlencoded` form (first value of each);
    a body over `MAX_FORM_BYTES` or of another type gives no fields."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items() if values}


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = SIGN_IN_PATH
    if request.method == "GET" and safe_next(wanted) != "/crm/":
        target += f"?next={quote(wanted, safe='')}"
    response = RedirectResponse(target, status_code=303)
    if request.cookies.get("patronage_crm_session"):
        # a stale or tampered cookie: drop it, so the browser stops sending it
        get_console(request).sessions.sign_out(response)
    return secure(response)


async def _csrf_rejected(request: Request, exc: Exception) -> Response:
    return render(
        request,
        "refused.html",
        {
            "title": "Form refused",
            "message": "This form was not sent from a page of this console, or the page was "
            "too old. Go back, reload the page and try again.",
        },
        status=403,
    )


async def _models_not_loaded(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelsNotLoaded)
    return not_loaded_page(request, exc.session)


def install_console(app: FastAPI, services: Services) -> None:
    """Mount the console's pages on `app` and keep its state on `app.state.console`."""
    from serving.crm import routes_customers, routes_models, routes_overview, routes_sign_in

    app.state.console = Console(
        services=services,
        sessions=ConsoleSessions(services.settings, services.keys),
        registry=RegistryListing(services.settings.tracking_uri),
    )
    for module in (routes_sign_in, routes_overview, routes_customers, routes_models):
        app.include_router(module.router)
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.add_exception_handler(ModelsNotLoaded, _models_not_loaded)


def not_loaded_page(request: Request, session: ConsoleSession | None) -> Response:
    """503 page shown before the models are loaded."""
    return render(
        request,
        "refused.html",
        {
            "title": "Models are loading",
            "message": "The shop's models are not loaded yet. Reload this page in a moment.",
            "session": session,
        },
        status=503,
    )


def page_context(session: ConsoleSession, models: ServingModels, **more: Any) -> dict[str, Any]:
    """What every signed-in page shows: the session (for the sign-out form) and the shop."""
    return {"session": session, "shop": models.shop or "this shop", **more}
