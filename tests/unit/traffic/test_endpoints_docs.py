"""The copy-paste examples of docs/traffic/*.md stay valid specs (the CLI's YAML reading and the
spec's own validation; the models they name are the reader's)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from modelyard.cli_traffic import _SpecLoader
from modelyard.core.clock import FakeClock
from modelyard.traffic.compiled import compile_endpoint
from modelyard.traffic.spec import parse_spec

DOCS = Path(__file__).resolve().parents[3] / "docs" / "traffic"
PAGES = ["endpoints", "ab-routing", "fallbacks", "hedging", "response-cache", "cascade"]
HEREDOC = re.compile(r"cat > \S+\.yaml <<'YAML'\n(.*?)\nYAML\n", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for page in PAGES:
        text = (DOCS / f"{page}.md").read_text()
        blocks = HEREDOC.findall(text)
        assert blocks, f"{page}.md has no copy-paste spec"
        found += [(page, block) for block in blocks]
    return found


@pytest.mark.parametrize(("page", "block"), examples(), ids=lambda v: str(v)[:20])
def test_doc_example_is_a_valid_spec(page: str, block: str) -> None:
    spec = parse_spec(yaml.load(block, Loader=_SpecLoader))  # a SafeLoader subclass
    compile_endpoint(spec, 1, FakeClock())  # static fallbacks build, routes compile


def test_bare_on_key_is_the_word_on() -> None:
    assert yaml.load("on: [error]\nflag: yes\nok: true", Loader=_SpecLoader) == {
        "on": ["error"],
        "flag": "yes",
        "ok": True,
    }
