"""Rendering the console's pages: the Jinja2 templates (autoescaped), number formats in the
shop's words, and the security headers every console answer carries.

Pages are HTML rendered on the server; no script runs in them. The Content-Security-Policy
allows only this site's stylesheet and chart images, forms posted back to this site, and no
framing; answers are never cached (they show customer data) and never sniffed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def present(value: Any) -> bool:
    """False for a missing value: None, NaN, pandas' NA and NaT, an infinite number."""
    if value is None:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if pd.api.types.is_scalar(value):
        return not bool(pd.isna(value))
    return True


def number(value: Any, places: int = 0) -> str:
    """1234.5 -> `1,234` (or `1,234.50` with places=2); missing -> an en dash."""
    if not present(value):
        return "–"
    return f"{float(value):,.{places}f}"


def percent(value: Any, places: int = 0) -> str:
    """0.123 -> `12%`; missing -> an en dash."""
    if not present(value):
        return "–"
    return f"{float(value) * 100:,.{places}f}%"


def day(value: Any) -> str:
    """An ISO time or Timestamp as `5 Jan 2026` (UTC); missing -> an en dash."""
    if not present(value) or value == "":
        return "–"
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return "–"
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return f"{stamp.day} {stamp.strftime('%b %Y')}"


def moment(value: Any) -> str:
    """An ISO time as `5 Jan 2026 14:03 UTC`; missing -> an en dash."""
    shown = day(value)
    if shown == "–":
        return shown
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return f"{shown} {stamp.strftime('%H:%M')} UTC"


def words(name: str) -> str:
    """`predicted_clv_365d` -> `predicted clv 365d` (for labels of plain keys)."""
    return name.replace("_", " ")


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(("html",), default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(number=number, percent=percent, day=day, moment=moment, words=words)
    environment.tests["present"] = present
    return environment


ENVIRONMENT = _environment()


def secure(response: Response) -> Response:
    """Add the console's security headers to a response."""
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    """A page from `templates/`, with the security headers; `context` may hold `session`."""
    html = ENVIRONMENT.get_template(template).render(request_path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status)
    secure(response)
    return response
