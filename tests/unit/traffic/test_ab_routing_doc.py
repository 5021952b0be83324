"""The copy-paste example of docs/traffic/ab-routing.md prints what the page says it prints."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from modelyard.traffic.routing import choose_route, sticky_bucket
from modelyard.traffic.spec import parse_spec

PAGE = Path(__file__).parents[3] / "docs" / "traffic" / "ab-routing.md"


def test_example_routes_are_the_real_routes() -> None:
    text = PAGE.read_text()
    spec = parse_spec(yaml.safe_load(re.search(r"<<'YAML'\n(.*?)\nYAML", text, re.S)[1]))  # type: ignore[index]
    users = re.search(r"for user in ([\w ]+); do", text)[1].split()  # type: ignore[index]
    claims = re.findall(r"# x-modelyard-route: (\w+) +<- (\w+)(?: \(bucket (\d+)\))?", text)
    assert [user for _, user, _ in claims] == users
    for route, user, bucket in claims:
        assert choose_route(spec, None, user, 0.0).name == route, user
        assert not bucket or sticky_bucket(spec.name, user) == int(bucket)
    assert {route for route, _, _ in claims} == {"control", "treatment"}  # both routes shown
