"""Which manifest file paths stay inside a version's root (registry fetch and pipeline steps)."""

from __future__ import annotations

import pytest

from modelyard.manifest import is_version_relpath


@pytest.mark.parametrize("path", ["model.onnx", "a/b/c.txt", "steps/tokenizer.json", "..a", "a.."])
def test_plain_relative_paths_are_inside(path: str) -> None:
    assert is_version_relpath(path)


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x", "a/../b", "a/./b", "./a", "a//b", "a/", "a\\b", "a\x00b"]
)
def test_paths_that_leave_or_are_ambiguous_are_not(path: str) -> None:
    assert not is_version_relpath(path)
