"""`patronage serve`: the scoring service (FastAPI on uvicorn); see docs/serving.md.

The server, FastAPI and MLflow are imported inside the handler.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from patronage.cli import PatronageError
from patronage.commands._registry import add_shop_option

if TYPE_CHECKING:
    from serving.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve recommendations and CRM scores from the champion models over HTTP",
        description=(
            "Start the HTTP scoring service (OpenAPI at /docs). It loads the @champion versions "
            "of one shop's models (patronage.SHOP.recommender, .churn, .loyalty; --shop, default "
            "the store's only shop) from the MLflow registry in the background (/health/ready "
            "turns 200 once a role is loaded; a role training skipped answers 503 "
            "role_not_trained with the reason), polls the "
            "registry and swaps in a new champion without dropping a request. API keys come "
            "from PATRONAGE_API_KEYS='storefront=KEY,crm=KEY,admin=KEY' (a scope may repeat); "
            "without any key the server refuses to start unless --insecure-dev. The registry "
            "is MLFLOW_TRACKING_URI when set, else sqlite:///mlruns/mlflow.db. Other settings: "
            "PATRONAGE_EVENTS_DIR (default data/events), see docs/serving.md."
        ),
    )
    add_shop_option(
        parser,
        (
            "the shop whose champions are served (default: PATRONAGE_SHOP, else the only shop "
            "in the store)"
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes; each holds its own copy of the models in memory (default: 1)",
    )
    parser.add_argument(
        "--insecure-dev",
        action="store_true",
        help="allow serving without any API key (every route open; local development only)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        metavar="N",
        help="check the registry for a new champion every N seconds (0: never; default 30 or "
        "PATRONAGE_POLL_SECONDS)",
    )
    parser.add_argument(
        "--events-dir",
        default=None,
        metavar="DIR",
        help="directory of the append-only event log (default data/events or PATRONAGE_EVENTS_DIR)",
    )
    parser.add_argument(
        "--events-url",
        default=None,
        metavar="URL",
        help="keep posted events in PostgreSQL, shared by every replica: "
        "postgresql://USER@HOST:PORT/DB?schema=S (default: the file log; or "
        "PATRONAGE_EVENTS_URL; docs/postgresql.md)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request line (off: costs throughput)"
    )
    parser.add_argument(
        "--demo-keys",
        action="store_true",
        help="generate one random key per scope for this run and print them with example "
        "requests (for `make run`; never for production)",
    )
    parser.add_argument(
        "--examples-from",
        default=None,
        metavar="DIR",
        help="with --demo-keys: a shop directory whose first customer and item ids the "
        "printed examples use",
    )
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from serving.config import Settings, SettingsError

    if args.workers < 1:
        raise PatronageError("--workers must be at least 1")
    # Settings travel to each uvicorn worker process through the environment.
    if args.insecure_dev:
        os.environ["PATRONAGE_INSECURE_DEV"] = "true"
    if args.poll_seconds is not None:
        os.environ["PATRONAGE_POLL_SECONDS"] = str(args.poll_seconds)
    if args.events_dir is not None:
        os.environ["PATRONAGE_EVENTS_DIR"] = args.events_dir
    if args.events_url is not None:
        os.environ["PATRONAGE_EVENTS_URL"] = args.events_url
    if args.shop is not None:
        os.environ["PATRONAGE_SHOP"] = args.shop
    if args.demo_keys:
        os.environ["PATRONAGE_API_KEYS"] = ",".join(
            f"{scope}={key}" for scope, key in _demo_keys().items()
        )
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        settings = Settings.from_env()
        settings.check_can_start()
    except SettingsError as error:
        raise PatronageError(str(error)) from None

    import uvicorn

    if args.demo_keys:
        print(_examples(args.host, args.port, args.examples_from), flush=True)

    print(
        f"serving on http://{args.host}:{args.port} (docs at /docs), shop "
        f"{settings.shop or '(the only one in the store)'} from {settings.tracking_uri} "
        f"@{settings.model_alias}, events in {_events_location(settings)}",
        flush=True,
    )
    uvicorn.run(
        "serving.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level="info",
        # header size limit and slow-client timeout (PATRONAGE_MAX_HEADER_BYTES,
        # PATRONAGE_REQUEST_READ_TIMEOUT_SECONDS), each worker reads them from the environment
        http="serving.http_protocol:GuardedHttpProtocol",
    )
    return 0


def _demo_keys() -> dict[str, str]:
    import secrets

    return {scope: secrets.token_urlsafe(18) for scope in ("storefront", "crm", "admin")}


def _events_location(settings: Settings) -> str:
    """Where posted events go, for the start-up line (a URL's password masked)."""
    if settings.events_url:
        from features.postgres_url import split_url

        return split_url(settings.events_url, default_schema="patronage_events").masked
    return str(settings.events_dir)


def _first_ids(directory: str | None) -> tuple[str, str]:
    """A customer id and an item id from the shop's purchases (placeholders without one)."""
    if directory:
        from pathlib import Path

        import pandas as pd

        for suffix in (".csv", ".parquet"):
            path = Path(directory) / f"purchases{suffix}"
            if path.exists():
                frame = (
                    pd.read_csv(path, dtype=str, nrows=1)
                    if suffix == ".csv"
                    else pd.read_parquet(path, columns=["customer_id", "item_id"]).head(1)
                )
                return str(frame["customer_id"].iloc[0]), str(frame["item_id"].iloc[0])
    return "CUSTOMER_ID", "ITEM_ID"


def _examples(host: str, port: int, directory: str | None) -> str:
    """The demo keys and a working request per scope, ready to paste."""
    keys = dict(pair.split("=", 1) for pair in os.environ["PATRONAGE_API_KEYS"].split(","))
    customer_id, item_id = _first_ids(directory)
    base = f"http://{host}:{port}"
    lines = [
        "demo API keys for this run (PATRONAGE_API_KEYS):",
        *(f"  {scope}: {key}" for scope, key in keys.items()),
        "example requests (the models load in the background: wait for "
        f"`curl {base}/health/ready`):",
        f"  curl -H 'X-API-Key: {keys['storefront']}' "
        f"'{base}/v1/customers/{customer_id}/recommendations?k=5'",
        f"  curl -H 'X-API-Key: {keys['storefront']}' -H 'Content-Type: application/json' "
        f'-d \'{{"items": ["{item_id}"]}}\' {base}/v1/recommendations/cross-sell',
        f"  curl -H 'X-API-Key: {keys['crm']}' {base}/v1/customers/{customer_id}/churn",
        f"  curl -H 'X-API-Key: {keys['crm']}' {base}/v1/customers/{customer_id}/loyalty",
        f"  curl -H 'X-API-Key: {keys['admin']}' {base}/v1/models",
        f"  open {base}/docs",
        f"the CRM console: open {base}/crm/ and sign in with the crm key",
    ]
    return "\n".join(lines)
