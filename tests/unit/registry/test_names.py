from __future__ import annotations

import pytest

from modelyard.errors import InvalidNameError
from modelyard.registry.names import validate_alias, validate_name


@pytest.mark.parametrize("name", ["fraud", "a", "A1", "fraud-v2", "x.y_z", "9lives", "a" * 128])
def test_valid_model_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "../x", "a/b", "a\\b", "..", "a..b", ".hidden", "-x", "_x", "a b", "é", "a" * 129, "x\n"],
)
def test_invalid_model_names(name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"model name"):
        validate_name(name)


def test_non_string_name() -> None:
    with pytest.raises(InvalidNameError, match=r"must be a string"):
        validate_name(3)


@pytest.mark.parametrize("alias", ["production", "candidate", "v2", "blue-green", "1a"])
def test_valid_aliases(alias: str) -> None:
    assert validate_alias(alias) == alias


@pytest.mark.parametrize("alias", ["1", "42", "../prod", "a/b", ""])
def test_invalid_aliases(alias: str) -> None:
    with pytest.raises(InvalidNameError, match=r"alias"):
        validate_alias(alias)


def test_all_digit_alias_message_explains_why() -> None:
    with pytest.raises(InvalidNameError, match=r"read as a version"):
        validate_alias("7")
