"""`patronage serve`: the scoring service (FastAPI on uvicorn); see docs/serving.md.

The server, FastAPI and MLflow are imported inside the handler.
"""

from __future__ import annotations

import argparse
import os

from patronage.cli import PatronageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve recommendations and CRM scores from the champion models over HTTP",
        description=(
            "Start the HTTP scoring service (OpenAPI at /docs). It loads the @champion versions "
            "of patronage-recommender, patronage-churn and patronage-loyalty from the MLflow "
            "registry in the background (/health/ready turns 200 when loaded), polls the "
            "registry and swaps in a new champion without dropping a request. API keys come "
            "from PATRONAGE_API_KEYS='storefront=KEY,crm=KEY,admin=KEY' (a scope may repeat); "
            "without any key the server refuses to start unless --insecure-dev. The registry "
            "is MLFLOW_TRACKING_URI when set, else sqlite:///mlruns/mlflow.db. Other settings: "
            "PATRONAGE_EVENTS_DIR (default data/events), see docs/serving.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes; each holds its own copy of the models in memory",
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
        "--access-log", action="store_true", help="log every request line (off: costs throughput)"
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
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:
        settings = Settings.from_env()
        settings.check_can_start()
    except SettingsError as error:
        raise PatronageError(str(error)) from None

    import uvicorn

    print(
        f"serving on http://{args.host}:{args.port} (docs at /docs), models from "
        f"{settings.tracking_uri} @{settings.model_alias}, events in {settings.events_dir}",
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
    )
    return 0
