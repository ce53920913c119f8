"""PostgreSQL URLs as Patronage takes them: `postgresql://USER@HOST:PORT/DB?schema=SCHEMA`.

The `schema` query parameter is Patronage's own (libpq does not know it): `split_url` takes it
off and hands back the rest for the driver. `masked` hides a password before a URL is printed,
logged or recorded in MLflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


class BadDatabaseUrl(ValueError):
    """A PostgreSQL URL Patronage cannot use; the message says what to fix."""


def is_postgres_url(text: object) -> bool:
    """True when `text` is a string naming a PostgreSQL database (postgresql:// or postgres://)."""
    return isinstance(text, str) and text.startswith(SCHEMES)


@dataclass(frozen=True)
class DatabaseUrl:
    """A PostgreSQL URL taken apart: what the driver gets, and the schema Patronage uses."""

    conninfo: str
    """The URL without Patronage's `schema` parameter (for psycopg / libpq)."""
    schema: str
    database: str
    """The database name (the URL's path), e.g. for a default shop name."""

    @property
    def masked(self) -> str:
        """The URL with its password replaced by `***`, and the schema."""
        return f"{masked(self.conninfo)} (schema {self.schema})"


def split_url(url: str, default_schema: str = "public") -> DatabaseUrl:
    """`url` taken apart; raises `BadDatabaseUrl` when it is not a PostgreSQL URL or its schema
    is not a plain identifier (letters, digits, `_`, at most 63 characters)."""
    if not is_postgres_url(url):
        raise BadDatabaseUrl(f"{masked(url)} is not a postgresql://USER@HOST:PORT/DB URL")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    schema = schemas[-1] if schemas else default_schema
    if not _IDENTIFIER.fullmatch(schema):
        raise BadDatabaseUrl(
            f"schema {schema!r} in {masked(url)}: use a plain identifier (letters, digits, _)"
        )
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
    return DatabaseUrl(conninfo, schema, parts.path.lstrip("/") or "postgres")


def masked(url: str) -> str:
    """`url` with the password (if any) replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_database(url: str, database: str) -> str:
    """`url` naming another database on the same server (query parameters kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))
