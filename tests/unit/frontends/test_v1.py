"""KServe V1: rows (instances) and columns (inputs), single and multiple inputs and outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelyard.types import Datatype, TensorSpec
from tests.unit.frontends.conftest import Client
from tests.unit.frontends.fakes import FakeDataPlane, _identity

ROWS = [list(range(16)), list(range(16, 32))]
ONES = [[1] * 16, [1] * 16]


def test_single_input_rows_single_output(client: Client, dataplane: FakeDataPlane) -> None:
    response = client.post("/v1/models/identity_fp32:predict", json={"instances": [[0.5, 1.5]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [[0.5, 1.5]]}
    name, version, request, _ = dataplane.calls[-1]
    assert (name, version) == ("identity_fp32", None)
    assert request.inputs["INPUT0"].dtype == np.float32


def test_multiple_inputs_as_objects_multiple_outputs_as_objects(client: Client) -> None:
    instances = [{"INPUT0": r, "INPUT1": o} for r, o in zip(ROWS, ONES, strict=True)]
    response = client.post("/v1/models/simple:predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert predictions[1] == {
        "OUTPUT0": [v + 1 for v in ROWS[1]],
        "OUTPUT1": [v - 1 for v in ROWS[1]],
    }


def test_columns(client: Client) -> None:
    response = client.post(
        "/v1/models/simple:predict", json={"inputs": {"INPUT0": ROWS, "INPUT1": ONES}}
    )
    assert response.status_code == 200
    assert response.json()["predictions"][0]["OUTPUT0"] == [v + 1 for v in ROWS[0]]
    single = client.post("/v1/models/identity_int64:predict", json={"inputs": [[1, 2]]})
    assert single.json() == {"predictions": [[1, 2]]}


def test_bytes_predictions_are_strings_or_b64(client: Client, dataplane: FakeDataPlane) -> None:
    response = client.post("/v1/models/identity_bytes:predict", json={"instances": [["é", "x"]]})
    assert response.json() == {"predictions": [["é", "x"]]}
    dataplane.outputs_override = {"OUTPUT0": np.array([[b"\xff", b"ok"]], dtype=object)}
    response = client.post("/v1/models/identity_bytes:predict", json={"instances": [["a", "b"]]})
    assert response.json() == {"predictions": [[{"b64": "/w=="}, "ok"]]}


def test_outputs_without_a_shared_batch_dim_come_back_as_columns(
    client: Client, dataplane: FakeDataPlane
) -> None:
    dataplane.outputs_override = {
        "OUTPUT0": np.zeros((2, 16), np.int32),
        "OUTPUT1": np.array(7, np.int32),
    }
    response = client.post(
        "/v1/models/simple:predict",
        json={"instances": [{"INPUT0": r, "INPUT1": o} for r, o in zip(ROWS, ONES, strict=True)]},
    )
    assert response.json()["predictions"]["OUTPUT1"] == 7


def test_model_status_and_list(client: Client, dataplane: FakeDataPlane) -> None:
    assert client.get("/v1/models/simple").json() == {"name": "simple", "ready": True}
    dataplane.loaded.discard("simple")
    assert client.get("/v1/models/simple").json() == {"name": "simple", "ready": False}
    assert client.get("/v1/models/nope").status_code == 404
    models = client.get("/v1/models").json()["models"]
    assert "simple" in models and "identity_bool" in models


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/models/simple:predict", {}, 400, "instances"),
        ("/v1/models/simple:predict", {"instances": [], "inputs": []}, 400, "exactly one"),
        ("/v1/models/simple:predict", {"instances": []}, 400, "non-empty"),
        ("/v1/models/simple:predict", {"instances": [ROWS[0]]}, 400, "keyed by input name"),
        ("/v1/models/simple:predict", {"instances": [{"INPUT0": ROWS[0]}]}, 400, "INPUT1"),
        ("/v1/models/simple:predict", {"inputs": {"INPUT0": ROWS}}, 400, "INPUT1"),
        ("/v1/models/simple:predict", {"inputs": ROWS}, 400, "keyed by input name"),
        ("/v1/models/identity_uint8:predict", {"instances": [[300]]}, 400, "UINT8"),
        ("/v1/models/identity_fp32:predict", {"instances": [[1.0], [2.0, 3.0]]}, 400, "INPUT0"),
        ("/v1/models/simple:explain", {"instances": [ROWS[0]]}, 400, "explain"),
        ("/v1/models/simple", {"instances": [ROWS[0]]}, 404, "predict"),
        ("/v1/models/nope:predict", {"instances": [[1]]}, 404, "nope"),
    ],
)
def test_bad_v1_requests(
    client: Client, path: str, body: dict[str, Any], status: int, needle: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status
    assert needle in response.json()["error"]
    ok = client.post("/v1/models/identity_fp32:predict", json={"instances": [[1.0]]})
    assert ok.status_code == 200


def test_v1_rows_over_the_element_limit_are_413(dataplane: FakeDataPlane) -> None:
    from modelyard.frontends.rest import create_rest_app
    from tests.unit.frontends.conftest import make_settings

    client = Client(create_rest_app(dataplane, make_settings(max_tensor_elements=3)))
    response = client.post("/v1/models/identity_fp32:predict", json={"instances": [[1.0] * 4]})
    assert response.status_code == 413 and "INPUT0" in response.json()["error"]


def test_v1_bytes_model_with_a_custom_signature(dataplane: FakeDataPlane, client: Client) -> None:
    spec = TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,))
    out = TensorSpec(name="OUTPUT0", datatype=Datatype.BYTES, shape=(-1,))
    dataplane.models["echo"] = ((spec,), (out,), lambda x: _identity({"INPUT0": x["text"]}))
    response = client.post("/v1/models/echo:predict", json={"instances": ["a", "b"]})
    assert response.json() == {"predictions": ["a", "b"]}
