"""A ``materialized`` route on SQLite: hit from the table, live on a miss, stale rows never served
(the registry's own database and a separate one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import InvalidInputError
from modelyard.registry.registry import Registry
from modelyard.registry.store import Store
from modelyard.settings import Settings
from modelyard.traffic.materialized import db_store, row_digests
from modelyard.traffic.spec import parse_spec
from modelyard.types import InferResponse
from tests.unit.jobs.materializekit import (
    FEATURES,
    batch,
    features,
    push_linear,
    run_job,
    serving,
    settings_for,
)


@pytest.fixture(params=["registry-db", "own-db"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Settings, Store, dict[str, str]]]:
    root = tmp_path / "registry"
    with Registry(root) as registry:
        push_linear(registry, tmp_path)
    settings = settings_for(str(root))
    spec: dict[str, str] = {"table": "scores"}
    if request.param == "own-db":
        spec["db"] = f"sqlite:///{tmp_path / 'predictions.db'}"
        store = db_store(spec["db"])
        yield settings, store, spec
        store.close()
        return
    with Registry(root) as registry:
        yield settings, registry.store, spec


def assert_outputs(response: InferResponse, *keys: int) -> None:
    want = batch(*keys).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(response.outputs["output"], want, rtol=1e-6)


def test_a_row_in_the_table_is_answered_from_it(
    setup: tuple[Settings, Store, dict[str, str]],
) -> None:
    settings, store, spec = setup
    result = run_job(settings, store, "scores", range(10))
    assert (result.model, result.version, result.rows) == ("linear", 1, 10)
    with serving(settings, spec) as ep:
        response = ep.infer(batch(3, 7))
        assert response.parameters["answered_by"] == "table"
        assert response.parameters["materialized"] == "hit"
        assert response.parameters["route"] == "main"
        assert response.model_version == "1"
        assert response.outputs["output"].dtype == np.float32
        assert_outputs(response, 3, 7)
        assert ep.calls.models == []  # the model was not called


def test_a_miss_is_answered_live_and_says_so(setup: tuple[Settings, Store, dict[str, str]]) -> None:
    settings, store, spec = setup
    run_job(settings, store, "scores", range(5))
    with serving(settings, spec) as ep:
        response = ep.infer(batch(3, 99))  # one row of two is not in the table
        assert response.parameters["answered_by"] == "live"
        assert response.parameters["materialized"] == "miss"
        assert_outputs(response, 3, 99)
        assert ep.calls.models == ["linear:1"]


def test_rows_of_an_older_version_are_not_served(
    setup: tuple[Settings, Store, dict[str, str]], tmp_path: Path
) -> None:
    settings, store, spec = setup
    run_job(settings, store, "scores", range(5))
    with Registry(settings.registry) as registry:
        assert push_linear(registry, tmp_path) == 2  # production moves on
    with serving(settings, spec) as ep:
        response = ep.infer(batch(2))
        assert response.parameters["answered_by"] == "live"
        assert response.parameters["materialized"] == "stale"
        assert response.model_version == "2" and ep.calls.models == ["linear:2"]
        run_job(settings, store, "scores", range(5))  # refresh: restamped with version 2
        again = ep.infer(batch(2))
        assert again.parameters["answered_by"] == "table" and again.model_version == "2"


def test_rows_found_by_a_key_parameter(setup: tuple[Settings, Store, dict[str, str]]) -> None:
    settings, store, spec = setup
    run_job(settings, store, "scores", range(5))
    with serving(settings, {**spec, "key": "customer"}) as ep:
        # The key names the row; the table answers for it.
        hit = ep.infer(batch(4), customer=4)
        assert hit.parameters["answered_by"] == "table"
        assert_outputs(hit, 4)
        many = ep.infer(batch(1, 2), customer=["1", "2"])
        assert many.parameters["answered_by"] == "table"
        unknown = ep.infer(batch(1), customer="nobody")
        assert unknown.parameters["materialized"] == "miss"
        # Without the parameter, rows are found by their inputs.
        assert ep.infer(batch(2)).parameters["answered_by"] == "table"
        # A key count that does not match the rows is an error: answered live.
        wrong = ep.infer(batch(1, 2), customer="1")
        assert wrong.parameters == {
            "route": "main",
            "answered_by": "live",
            "materialized": "error",
        }


def test_a_missing_table_is_answered_live(setup: tuple[Settings, Store, dict[str, str]]) -> None:
    settings, _, spec = setup
    with serving(settings, {**spec, "table": "nothing_here"}) as ep:
        response = ep.infer(batch(1))
        assert response.parameters["materialized"] == "error"
        assert_outputs(response, 1)


def test_row_digests_are_per_row_and_layout_free() -> None:
    x = batch(1, 2)
    assert row_digests({"input": x}) == [
        row_digests({"input": x[:1]})[0],
        row_digests({"input": np.asfortranarray(x)[1:]})[0],
    ]
    assert row_digests({"input": x.astype(np.float64)}) != row_digests({"input": x})
    with pytest.raises(InvalidInputError, match="rows"):
        row_digests({"a": x, "b": x[:1]})
    assert len(features(0)) == FEATURES


def test_the_route_field_is_validated() -> None:
    route = {"name": "main", "model": "m", "weight": 100}
    with pytest.raises(InvalidInputError, match=r"materialized\.table"):
        parse_spec({"name": "e", "routes": [{**route, "materialized": {"table": "x; drop"}}]})
    with pytest.raises(InvalidInputError, match=r"materialized\.tabel"):
        parse_spec({"name": "e", "routes": [{**route, "materialized": {"tabel": "x"}}]})
