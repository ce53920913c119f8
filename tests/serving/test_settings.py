"""Settings from the environment (pydantic-settings): the PATRONAGE_ prefix, MLflow's own
variable, keyword overrides, and errors that name the variable but never show a key."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.config import DEFAULT_TRACKING_URI, Settings, SettingsError


def test_every_field_reads_its_prefixed_variable() -> None:
    settings = Settings.from_env(
        {
            "PATRONAGE_API_KEYS": "crm=k1,admin=k2",
            "PATRONAGE_POLL_SECONDS": "0",
            "PATRONAGE_EVENTS_DIR": "/tmp/events",
            "patronage_shop": "north",  # any case, as environment variables go
            "PATRONAGE_LOAD_ON_START": "false",
            "PATRONAGE_SHARED_DATA": "/elsewhere",  # not a setting: ignored
            "POLL_SECONDS": "99",  # no prefix: not ours
        }
    )
    assert settings.keys_by_scope() == (("crm", "k1"), ("admin", "k2"))
    assert settings.poll_seconds == 0.0
    assert settings.events_dir == Path("/tmp/events")
    assert settings.shop == "north"
    assert settings.load_on_start is False


def test_os_environ_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATRONAGE_MAX_BATCH_CUSTOMERS", "25")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PATRONAGE_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    assert settings.max_batch_customers == 25
    assert settings.tracking_uri == DEFAULT_TRACKING_URI
    # a given mapping replaces os.environ entirely
    assert Settings.from_env({}).max_batch_customers == 1000


def test_tracking_uri_honours_mlflow_variable_and_ours_wins() -> None:
    assert Settings.from_env({"MLFLOW_TRACKING_URI": "sqlite:///m.db"}).tracking_uri == (
        "sqlite:///m.db"
    )
    both = {"MLFLOW_TRACKING_URI": "sqlite:///m.db", "PATRONAGE_TRACKING_URI": "sqlite:///p.db"}
    assert Settings.from_env(both).tracking_uri == "sqlite:///p.db"
    assert Settings(tracking_uri="sqlite:///k.db").tracking_uri == "sqlite:///k.db"


def test_overrides_win_and_none_leaves_the_environment() -> None:
    environ = {"PATRONAGE_POLL_SECONDS": "5", "PATRONAGE_SHOP": "north"}
    settings = Settings.from_env(environ, poll_seconds=1.5, shop=None)
    assert settings.poll_seconds == 1.5 and settings.shop == "north"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"PATRONAGE_POLL_SECONDS": "soon"}, "PATRONAGE_POLL_SECONDS"),
        ({"PATRONAGE_MAX_BATCH_CUSTOMERS": "0"}, "PATRONAGE_MAX_BATCH_CUSTOMERS"),
        ({"PATRONAGE_INSECURE_DEV": "perhaps"}, "PATRONAGE_INSECURE_DEV"),
        ({"PATRONAGE_API_KEYS": "crm=top-secret-1,root=top-secret-2"}, "PATRONAGE_API_KEYS"),
    ],
)
def test_a_bad_value_names_its_variable_and_hides_keys(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError, match=variable) as raised:
        Settings.from_env(environ)
    assert str(raised.value).startswith("invalid server settings: ")
    assert "top-secret" not in str(raised.value)
    assert raised.value.__cause__ is None  # pydantic's error (which shows inputs) is dropped


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ValueError):
        settings.poll_seconds = 1.0  # type: ignore[misc]
