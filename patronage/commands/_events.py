"""The `--events DIR|URL` option of the commands that read what was posted to the server
(`train`, `recommend`, `online-report`, `promote --online`): the file log's directory or the
PostgreSQL event store (`features.event_store`), opened for reading with clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from patronage.cli import PatronageError

if TYPE_CHECKING:
    from features.event_store import EventStore

EVENTS_METAVAR = "DIR|URL"
EVENTS_FORMS = (
    "the server's event log directory (e.g. data/events) or its PostgreSQL event store "
    "(postgresql://USER@HOST:PORT/DB?schema=S)"
)


def events_location(given: str | None) -> str:
    """`--events`, else the server's `PATRONAGE_EVENTS_URL`, else its `PATRONAGE_EVENTS_DIR`
    (default data/events). A directory must exist (PatronageError otherwise)."""
    from features.postgres_url import is_postgres_url

    if given is None:
        from serving.config import Settings

        settings = Settings.from_env()
        given = settings.events_url or str(settings.events_dir)
    if not is_postgres_url(given) and not Path(given).is_dir():
        raise PatronageError(
            f"--events {given}: no event log there; pass the server's event log directory "
            "(PATRONAGE_EVENTS_DIR) or its PostgreSQL event store (PATRONAGE_EVENTS_URL, "
            "postgresql://...?schema=S)"
        )
    return given


@contextmanager
def posted_events(given: str | None) -> Iterator[EventStore]:
    """The event store `--events` names (see `events_location`), closed afterwards; a store
    that cannot be read raises PatronageError naming it (its password masked)."""
    from features.event_store import open_event_store

    store = open_event_store(events_location(given))
    try:
        yield store
    except OSError as error:
        raise PatronageError(f"--events {store.location}: {error.strerror}") from None
    finally:
        store.close()
