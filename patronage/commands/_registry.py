"""Which registered model a command uses (recommend, score, the registry commands): the shop's
champion by default, another shop's only when `--model-uri` names it."""

from __future__ import annotations

import argparse
from pathlib import Path

from patronage.cli import PatronageError

SHOP_HELP = (
    "the shop's name in the registry (its models are patronage.SHOP.ROLE); default: the only "
    "shop in the store"
)


def add_shop_option(parser: argparse.ArgumentParser, help_text: str = SHOP_HELP) -> None:
    """The `--shop NAME` option of every command that reads or writes a shop's models."""
    parser.add_argument("--shop", default=None, metavar="NAME", help=help_text)


def model_artifact(uri: str, artifact: str) -> Path:
    """The local directory of `artifact` ("bundle", "scorer") inside the MLflow model at `uri`.

    Uses `MLFLOW_TRACKING_URI` or the default store `sqlite:///mlruns/mlflow.db`; says what to do
    when the model is missing or the store cannot be reached."""
    from training.registry import RegistryError, resolve_model_dir
    from training.tracking import TrackingUnavailable

    try:
        return resolve_model_dir(uri, artifact=artifact)
    except (TrackingUnavailable, RegistryError) as error:
        raise PatronageError(f"{uri}: {error}") from None


def shop_of_uri(uri: str) -> str | None:
    """The shop a `models:/patronage.SHOP.ROLE...` URI names (None for other URIs)."""
    from models.registry_names import MODEL_PREFIX

    if not uri.startswith(f"models:/{MODEL_PREFIX}."):
        return None
    name = uri.removeprefix("models:/").split("/")[0].split("@")[0]
    parts = name.split(".")
    return parts[1] if len(parts) == 3 else None


def champion_uri(shop: str | None, roles: tuple[str, ...], use: str) -> tuple[str, str]:
    """(URI, shop) of the shop's champion for the first of `roles` that has one (a role
    training skipped falls through to the next). `shop` None means the store's only shop.

    Raises `PatronageError` saying how to get a model (train, --fit, --model-uri) when the shop
    has none: a model of another shop is never used silently."""
    from mlflow.exceptions import MlflowException

    from models.registry_names import registered_name
    from training.registry import CHAMPION, RegistryError, resolve_shop, shops, skipped_reason
    from training.tracking import TrackingUnavailable, connect

    try:
        store, client = connect()
        shop = resolve_shop(client, shop)
    except (TrackingUnavailable, RegistryError) as error:
        raise PatronageError(f"no model to {use}: {error}") from None
    why_not = []
    for role in roles:
        name = registered_name(shop, role)
        try:
            client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            reason = skipped_reason(client, shop, role)
            why_not.append(f"{role}: " + (f"skipped by training ({reason})" if reason else "none"))
            continue
        return f"models:/{name}@{CHAMPION}", shop
    others = [s for s in shops(client) if s != shop]
    elsewhere = f" (the store has models of {', '.join(others)})" if others else ""
    raise PatronageError(
        f"shop {shop!r} has no champion to {use} in {store.tracking_uri} ({'; '.join(why_not)})"
        f"{elsewhere}: train it with `patronage train DIR --shop {shop}`, or name a model "
        "with --model-uri"
    )
