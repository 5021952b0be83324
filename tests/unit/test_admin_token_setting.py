"""The ``admin_token`` setting and the startup warning of a server whose management API is open."""

from __future__ import annotations

import logging
import pickle

import pytest
from pydantic import SecretStr, ValidationError

from modelyard.server import warn_if_management_open
from modelyard.settings import Settings


def test_read_from_the_environment_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_ADMIN_TOKEN", "s3cret")
    settings = Settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_token_is_an_error(value: str) -> None:
    with pytest.raises(ValidationError, match="admin_token"):
        Settings(admin_token=value)


def test_workers_get_the_token() -> None:
    """The supervisor hands workers ``model_dump()`` through pickling (spawn)."""
    data = pickle.loads(pickle.dumps(Settings(admin_token="s3cret").model_dump()))
    token = Settings(**data).admin_token
    assert token is not None and token.get_secret_value() == "s3cret"


@pytest.mark.parametrize(
    ("host", "token", "warns"),
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("10.1.2.3", None, True),
        ("modelyard.example.com", None, True),
        ("0.0.0.0", "s3cret", False),
        ("127.0.0.1", None, False),
        ("127.0.0.2", None, False),
        ("::1", None, False),
        ("localhost", None, False),
    ],
)
def test_startup_warns_when_an_open_management_api_is_reachable(
    host: str, token: str | None, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.model_construct(
        host=host, admin_token=None if token is None else SecretStr(token)
    )
    with caplog.at_level(logging.WARNING, logger="modelyard.server"):
        assert warn_if_management_open(settings) is warns
    messages = [r.getMessage() for r in caplog.records]
    if warns:
        assert len(messages) == 1 and "MODELYARD_ADMIN_TOKEN" in messages[0] and host in messages[0]
    else:
        assert messages == []
