"""Property test of ``EndpointStore.apply`` on a real registry: any spec document, valid or
hostile, is either stored or refused with a ModelYardError (a 4xx through the API), a refused
one changes nothing, and a stored one reads back as the same spec, also after the trip through
JSON that the management API and ``modelyard endpoint show`` make."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInputError, ModelYardError
from modelyard.registry.endpoints import EndpointStore, spec_doc
from modelyard.registry.registry import Registry
from modelyard.traffic.spec import parse_spec
from tests.strategies import one_in

#: Numbers a JSON/YAML document can hold, hostile ones included.
EDGES = [math.inf, 0, 0.0, 1e-300, 2**63, 2**70, -math.inf, math.nan, math.inf]
NUMBERS = st.sampled_from([False, True]).flatmap(
    lambda edge: (
        st.sampled_from(EDGES)
        if edge
        else st.one_of(st.integers(-3, 150), st.floats(min_value=-1.0, max_value=200.0))
    )
)
ANY = st.one_of(NUMBERS, st.none(), st.booleans(), st.text(max_size=4), st.just([]), st.just({}))
MODELS = st.sampled_from(["ident"] * 6 + ["linear"] * 3 + ["nosuch", "", "a/b"])
VERSIONS = st.sampled_from(
    [None] * 8 + [1, 2] * 2 + [3, 0, -1, 2**63, 2**70, "production", "nope", "", True]
)


def hostile(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` four times in five, else any value (so that most specs get deep enough)."""
    return one_in(5).flatmap(lambda bad: ANY if bad else valid)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 3))
    weights = [100 // n] * (n - 1) + [100 - 100 // n * (n - 1)]
    routes = [
        {
            "name": draw(hostile(st.just(f"r{i}"))),
            "model": draw(MODELS),
            "version": draw(VERSIONS),
            "weight": draw(hostile(st.just(w))),
        }
        for i, w in enumerate(weights)
    ]
    doc: dict[str, Any] = {"name": draw(hostile(st.sampled_from(["ep", "ep2"]))), "routes": routes}
    optional = {
        "timeout_ms": hostile(NUMBERS),
        "sticky_key": hostile(st.sampled_from(["x-user", "user"])),
        "cache": hostile(st.fixed_dictionaries({"ttl_s": NUMBERS, "max_bytes": NUMBERS})),
        "hedging": hostile(
            st.fixed_dictionaries({}, optional={"delay_ms": NUMBERS, "max_fraction": NUMBERS})
        ),
        "shadows": hostile(
            st.lists(
                st.fixed_dictionaries(
                    {"model": MODELS},
                    optional={"version": VERSIONS, "fraction": NUMBERS},
                ),
                max_size=2,
            )
        ),
    }
    for key, values in optional.items():  # each one half the time
        if draw(st.sampled_from([False, True])):
            doc[key] = draw(values)
    if draw(st.sampled_from([False] * 9 + [True])):
        doc["unknown_field"] = draw(ANY)
    return doc


def stored(store: EndpointStore) -> list[tuple[str, int, str]]:
    return [(r.name, r.revision, orjson.dumps(spec_doc(r.spec)).decode()) for r in store.list()]


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(doc=specs())
def test_any_spec_is_stored_whole_or_refused_without_a_trace(
    registry: Registry, doc: dict[str, Any]
) -> None:
    store = EndpointStore(registry)
    before = stored(store)
    try:
        record = store.apply(doc)
    except ModelYardError:
        assert stored(store) == before
        return
    # What the API serves (orjson) parses back into the same spec.
    served = orjson.loads(orjson.dumps(spec_doc(store.get(record.name).spec)))
    assert parse_spec(served) == record.spec


@pytest.mark.parametrize(
    "extra",
    [
        {"timeout_ms": math.inf},
        {"cache": {"ttl_s": math.inf}},
        {"hedging": {"delay_ms": math.inf}},
    ],
)
def test_infinite_numbers_are_refused(registry: Registry, extra: dict[str, Any]) -> None:
    # Found by the property: accepted, then served as null by the JSON API (no inf in JSON),
    # so the spec read back meant something else (no timeout instead of an infinite one).
    doc = {"name": "ep", "routes": [{"name": "a", "model": "ident", "weight": 100}], **extra}
    with pytest.raises(InvalidInputError, match="finite"):
        EndpointStore(registry).apply(doc)
