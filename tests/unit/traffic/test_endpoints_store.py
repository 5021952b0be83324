"""EndpointStore on a real SQLite registry: apply/get/list/delete, revisions, the change
counter, and validation against the registry (every problem listed, nothing half-applied)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import FailedPreconditionError, InvalidInputError, NotFoundError
from modelyard.registry.endpoints import (
    EndpointNotFoundError,
    EndpointStore,
    inputs_fit,
    spec_doc,
)
from modelyard.registry.registry import Registry
from modelyard.traffic.spec import parse_spec
from modelyard.types import Datatype, TensorSpec
from tests.testmodels import identity_model

_ZERO = {"datatype": "FP32", "shape": [1], "data": [0]}
_ZERO_INT = {"datatype": "INT64", "shape": [1, 1], "data": [0]}
_IDENT = "INPUT0 FP32 [-1, -1]"
_LINEAR = "input FP32 [-1, 20]"


def doc(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "fraud",
        "routes": [
            {"name": "a", "model": "ident", "version": 1, "weight": 50},
            {"name": "b", "model": "ident", "version": 2, "weight": 50},
        ],
    }
    return {**base, **extra}


@pytest.fixture
def store(registry: Registry) -> EndpointStore:
    return EndpointStore(registry)


def events(registry: Registry) -> list[tuple[str, str, str]]:
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute("SELECT kind, subject, data FROM events ORDER BY ts, kind").rows
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


def test_apply_creates_then_revises(store: EndpointStore, registry: Registry) -> None:
    seq0 = store.revision()
    first = store.apply(doc())
    assert (first.name, first.revision) == ("fraud", 1)
    assert store.revision() == seq0 + 1
    second = store.apply(doc(sticky_key="x-user-id"))
    assert second.revision == 2 and second.created_at == first.created_at
    assert store.revision() == seq0 + 2
    got = store.get("fraud")
    assert got.spec.sticky_key == "x-user-id" and got.revision == 2
    assert [e[0] for e in events(registry)] == ["endpoint.applied", "endpoint.applied"]
    assert json.loads(events(registry)[-1][2]) == {"revision": 2}


def test_list_is_sorted_by_name(store: EndpointStore) -> None:
    store.apply(doc(name="zeta"))
    store.apply(doc(name="alpha"))
    assert [r.name for r in store.list()] == ["alpha", "zeta"]


def test_delete(store: EndpointStore) -> None:
    store.apply(doc())
    seq = store.revision()
    store.delete("fraud")
    assert store.revision() == seq + 1
    assert store.list() == []
    with pytest.raises(EndpointNotFoundError, match="'fraud' not found"):
        store.get("fraud")
    with pytest.raises(EndpointNotFoundError):
        store.delete("fraud")


def test_a_recreated_endpoint_starts_again_at_revision_one(store: EndpointStore) -> None:
    store.apply(doc())
    store.apply(doc())
    store.delete("fraud")
    assert store.apply(doc()).revision == 1


def test_spec_round_trips_through_the_registry(store: EndpointStore) -> None:
    full = doc(
        sticky_key="user",
        timeout_ms=50,
        fallback={
            "on": ["timeout", "error"],
            "chain": [
                {"kind": "model", "model": "ident", "version": 1},
                {"kind": "last_good"},
                {
                    "kind": "static",
                    "outputs": {"OUTPUT0": {"datatype": "FP32", "shape": [1, 1], "data": [0]}},
                },
            ],
        },
        hedging={"delay_ms": 10},
        cache={"ttl_s": 5},
    )
    record = store.apply(full)
    assert store.get("fraud").spec == record.spec == parse_spec(full)
    assert spec_doc(record.spec)["fallback"]["on"] == ["error", "timeout"]
    assert "cascade" not in spec_doc(record.spec)  # unset parts are left out


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (
            {"routes": [{"name": "a", "model": "nope", "weight": 100}]},
            ["routes.0 (a)", "model 'nope' not found"],
        ),
        (
            {"routes": [{"name": "a", "model": "ident", "version": 9, "weight": 100}]},
            ["routes.0 (a)", "9"],
        ),
        (
            {"routes": [{"name": "a", "model": "ident", "version": "beta", "weight": 100}]},
            ["routes.0 (a)", "no alias 'beta'"],
        ),
        (
            {"fallback": {"chain": [{"kind": "model", "model": "ghost"}]}},
            ["fallback.chain.0", "ghost"],
        ),
        (
            {
                "rollout": {
                    "candidate": {"model": "ident", "version": "candidate"},
                    "steps": [{"weight": 50}],
                }
            },
            ["rollout.candidate", "no alias 'candidate'"],
        ),
        (
            {"shadows": [{"model": "shadowy"}]},
            ["shadows.0", "shadowy"],
        ),
    ],
)
def test_unknown_models_are_not_found_and_name_the_field(
    store: EndpointStore, change: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(NotFoundError) as info:
        store.apply(doc(**change))
    for fragment in fragments:
        assert fragment in info.value.message
    assert store.list() == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {
                "routes": [
                    {"name": "a", "model": "ident", "weight": 60},
                    {"name": "b", "model": "ident", "weight": 30},
                ]
            },
            "route weights must sum to 100, got 90",
        ),
        (
            {
                "cascade": {
                    "first": {"model": "ident"},
                    "then": {"model": "linear"},
                    "threshold": 1.5,
                }
            },
            "cascade.threshold",
        ),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"hedging": {"max_fraction": 2}}, "hedging.max_fraction"),
        ({"name": "bad name!"}, "endpoint name"),
        ({"sticky_key": " "}, "sticky_key: must not be empty"),
        (
            {
                "cascade": {
                    "first": {"model": "linear"},
                    "then": {"model": "ident"},
                    "output": "output",
                    "threshold": 0.5,
                }
            },
            "cascade.first: model 'linear' is served by no route",
        ),
        (
            {
                "cascade": {
                    "first": {"model": "ident"},
                    "then": {"model": "linear"},
                    "output": "probabilities",
                    "threshold": 0.5,
                }
            },
            "has no output 'probabilities'",
        ),
        (
            {
                "fallback": {
                    "chain": [
                        {
                            "kind": "static",
                            "outputs": {"y": {"datatype": "FP32", "shape": [2], "data": [1]}},
                        }
                    ]
                }
            },
            "fallback.chain.0.outputs.y.data",
        ),
        # A static answer stands in for the first route's model (ident: OUTPUT0 FP32 [-1, -1]).
        (
            {"fallback": {"chain": [{"kind": "static", "outputs": {"y": _ZERO}}]}},
            "fallback.chain.0.outputs.y: ident:1 has no output 'y' (its outputs: OUTPUT0)",
        ),
        (
            {"fallback": {"chain": [{"kind": "static", "outputs": {"OUTPUT0": _ZERO_INT}}]}},
            "fallback.chain.0.outputs.OUTPUT0.datatype: ident:1 answers FP32",
        ),
        (
            {"fallback": {"chain": [{"kind": "static", "outputs": {"OUTPUT0": _ZERO}}]}},
            "fallback.chain.0.outputs.OUTPUT0.shape: [1] does not fit ident:1's [-1, -1]",
        ),
        # Every model that answers the endpoint's requests takes the first route's inputs.
        (
            {
                "routes": [
                    {"name": "a", "model": "ident", "version": 1, "weight": 50},
                    {"name": "b", "model": "linear", "weight": 50},
                ]
            },
            f"routes.1 (b): linear:1's inputs ({_LINEAR}) do not fit ident:1's ({_IDENT})",
        ),
        (
            {"shadows": [{"model": "linear"}]},
            f"shadows.0: linear:1's inputs ({_LINEAR}) do not fit ident:1's ({_IDENT})",
        ),
        (
            {"fallback": {"chain": [{"kind": "model", "model": "linear"}]}},
            f"fallback.chain.0: linear:1's inputs ({_LINEAR}) do not fit ident:1's ({_IDENT})",
        ),
        (
            {"rollout": {"candidate": {"model": "linear"}, "steps": [{"weight": 50}]}},
            f"rollout.candidate: linear:1's inputs ({_LINEAR}) do not fit ident:1's ({_IDENT})",
        ),
    ],
)
def test_invalid_specs_are_refused_with_the_field_named(
    store: EndpointStore, change: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        store.apply(doc(**change))
    assert fragment in info.value.message
    assert store.list() == []


def _inputs(*specs: tuple[str, Datatype, tuple[int, ...]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(name=n, datatype=d, shape=s) for n, d, s in specs)


_F, _I = Datatype.FP32, Datatype.INT64


@pytest.mark.parametrize(
    ("got", "want", "fits"),
    [
        (_inputs(("x", _F, (-1, 4))), _inputs(("x", _F, (-1, 4))), True),
        (_inputs(("x", _F, (-1, 4))), _inputs(("x", _F, (2, -1))), True),  # -1 either side
        (_inputs(("x", _F, (1,)), ("y", _I, ())), _inputs(("y", _I, ()), ("x", _F, (1,))), True),
        (_inputs(("x", _F, (-1, 4))), _inputs(("x", _F, (-1, 3))), False),
        (_inputs(("x", _F, (-1, 4))), _inputs(("x", _F, (-1, 4, 1))), False),  # rank
        (_inputs(("x", _F, (-1,))), _inputs(("x", _I, (-1,))), False),  # datatype
        (_inputs(("x", _F, (-1,))), _inputs(("z", _F, (-1,))), False),  # name
        (_inputs(("x", _F, (-1,))), _inputs(("x", _F, (-1,)), ("y", _F, (-1,))), False),
        (_inputs(("x", _F, (-1,)), ("y", _F, (-1,))), _inputs(("x", _F, (-1,))), False),
    ],
)
def test_inputs_fit(got: tuple[TensorSpec, ...], want: tuple[TensorSpec, ...], fits: bool) -> None:
    assert inputs_fit(got, want) is fits


def test_a_datatype_mismatch_is_refused(
    store: EndpointStore, registry: Registry, tmp_path: Path
) -> None:
    registry.push(identity_model(Datatype.INT64, tmp_path / "int.onnx"), name="ints")
    with pytest.raises(InvalidInputError) as info:
        store.apply(doc(shadows=[{"model": "ints"}]))
    assert info.value.message == (
        "invalid endpoint 'fraud': shadows.0: ints:1's inputs (INPUT0 INT64 [-1, -1]) do not "
        f"fit ident:1's ({_IDENT})"
    )


def test_models_with_fitting_inputs_mix_and_the_cascade_is_not_compared(
    store: EndpointStore, registry: Registry, tmp_path: Path
) -> None:
    registry.push(identity_model(Datatype.FP32, tmp_path / "copy.onnx"), name="copy")
    store.apply(
        doc(
            routes=[
                {"name": "a", "model": "ident", "version": 1, "weight": 50},
                {"name": "b", "model": "copy", "weight": 50},
            ],
            shadows=[{"model": "copy"}],
            fallback={"chain": [{"kind": "model", "model": "ident", "version": 2}]},
            rollout={"candidate": {"model": "copy"}, "steps": [{"weight": 50}]},
            # The cascade's second model has checks of its own, not this one.
            cascade={
                "first": {"model": "ident"},
                "then": {"model": "linear"},
                "output": "OUTPUT0",
                "threshold": 0.5,
            },
        )
    )


def test_every_mismatch_is_listed_with_the_other_problems(store: EndpointStore) -> None:
    bad = doc(
        routes=[
            {"name": "a", "model": "ident", "weight": 50},
            {"name": "b", "model": "linear", "weight": 50},
        ],
        shadows=[{"model": "linear"}, {"model": "ghost"}],
        sticky_key="",
    )
    with pytest.raises(InvalidInputError) as info:
        store.apply(bad)
    message = info.value.message
    for fragment in ("routes.1 (b): linear:1", "shadows.0: linear:1", "sticky_key", "'ghost'"):
        assert fragment in message, message
    assert store.list() == []


def test_every_problem_is_listed_at_once(store: EndpointStore) -> None:
    bad = doc(
        routes=[{"name": "a", "model": "nope", "weight": 100}],
        sticky_key="",
        fallback={"chain": [{"kind": "model", "model": "ghost"}]},
    )
    with pytest.raises(InvalidInputError) as info:
        store.apply(bad)
    message = info.value.message
    assert "sticky_key" in message and "'nope'" in message and "'ghost'" in message


def test_field_and_route_problems_are_listed_together(store: EndpointStore) -> None:
    bad = doc(
        routes=[
            {"name": "a", "model": "ident", "weight": 60},
            {"name": "a", "model": "ident", "weight": 50},
        ],
        timeout_ms=-5,
        foo=1,
    )
    with pytest.raises(InvalidInputError) as info:
        store.apply(bad)
    message = info.value.message
    for fragment in ("sum to 100, got 110", "route names must be unique", "timeout_ms", "foo"):
        assert fragment in message, message


def test_a_refused_apply_leaves_the_previous_revision(store: EndpointStore) -> None:
    store.apply(doc())
    seq = store.revision()
    with pytest.raises(NotFoundError):
        store.apply(doc(routes=[{"name": "a", "model": "nope", "weight": 100}]))
    record = store.get("fraud")
    assert record.revision == 1 and len(record.spec.routes) == 2
    assert store.revision() == seq


def test_endpoint_may_share_a_models_name(store: EndpointStore) -> None:
    record = store.apply(doc(name="ident"))  # the endpoint wins for /v2/models/ident/infer
    assert record.name == "ident"


def test_unreadable_stored_specs(store: EndpointStore, registry: Registry) -> None:
    store.apply(doc())
    with registry.store.transaction() as tx:
        tx.execute(
            "INSERT INTO endpoints (name, spec, revision, created_at, updated_at) "
            'VALUES (\'broken\', \'{"name": "broken", "routes": []}\', 1, 0, 0)'
        )
    with pytest.raises(FailedPreconditionError, match="stored endpoint 'broken'"):
        store.list()
    assert [r.name for r in store.list(skip_invalid=True)] == ["fraud"]


def test_invalid_names_are_refused(store: EndpointStore) -> None:
    with pytest.raises(InvalidInputError, match="endpoint name"):
        store.get("../x")
