"""Hostile clients against a real server: whatever method, path, headers and body arrive, every
answer is a 2xx/4xx (never a 5xx, which would mean the server itself failed), errors are JSON
with a message, and afterwards the server is still ready and still answers correctly.

Requests are near-valid on purpose: the right model and input names with one or two things
wrong (datatype, shape, data, framing, parameters, headers), so that the checks behind the
codec (signature validation, the dataplane, the traffic layer, batching) are reached too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.frontends.tensor_codec import join_bytes
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.types import Datatype
from tests.serverproc import ServerProcess, start_server
from tests.strategies import one_in
from tests.testmodels import identity_model, linear_fp32_model, simple_model
from tests.unit.frontends.test_codec_fuzz import json_values, scalars
from tests.unit.frontends_grpc.test_codec_fuzz import infer_requests as grpc_infer_requests

pytestmark = pytest.mark.integration

#: model (or endpoint) -> its inputs: name, datatype, shape (-1 = any)
MODELS: dict[str, list[tuple[str, str, list[int]]]] = {
    "linear": [("input", "FP32", [-1, 20])],
    "batched": [("input", "FP32", [-1, 20])],
    "simple": [("INPUT0", "INT32", [-1, 16]), ("INPUT1", "INT32", [-1, 16])],
    "text": [("INPUT0", "BYTES", [-1, -1])],
    "flags": [("INPUT0", "BOOL", [-1, -1])],
    "small": [("INPUT0", "INT8", [-1, -1])],
    "ep": [("input", "FP32", [-1, 20])],  # an endpoint over linear: the traffic layer
}
IDENTITIES = {"text": Datatype.BYTES, "flags": Datatype.BOOL, "small": Datatype.INT8}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    with Registry(root / "reg") as reg:
        linear = linear_fp32_model(root / "linear.onnx")
        reg.push(linear, name="linear", alias="production")
        reg.push(linear, name="batched", alias="production", batching={"max_batch_size": 8})
        reg.push(simple_model(root / "simple.onnx"), name="simple", alias="production")
        for name, datatype in IDENTITIES.items():
            reg.push(identity_model(datatype, root / f"{name}.onnx"), name=name)
        EndpointStore(reg).apply(
            {
                "name": "ep",
                "routes": [
                    {"name": "a", "model": "linear", "weight": 50},
                    {"name": "b", "model": "batched", "weight": 50},
                ],
                "sticky_key": "x-user",
                "timeout_ms": 2000,
                "cache": {"ttl_s": 60, "max_bytes": 1 << 20},
            }
        )
    proc = start_server(root / "reg", "--preload", ",".join(m for m in MODELS if m != "ep"))
    yield proc
    assert proc.terminate() == 0, proc.log()


def _valid_values(datatype: str, count: int) -> st.SearchStrategy[list[Any]]:
    if datatype == "BYTES":
        return st.lists(st.text(max_size=4), min_size=count, max_size=count)
    if datatype == "BOOL":
        return st.lists(st.booleans(), min_size=count, max_size=count)
    if datatype.startswith(("INT", "UINT")):
        return st.lists(st.integers(-3, 100), min_size=count, max_size=count)
    return st.lists(st.floats(-1e3, 1e3, width=32), min_size=count, max_size=count)


def _raw(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        return join_bytes(v.encode() for v in values)
    return np.asarray(values, dtype=Datatype(datatype).numpy_dtype).tobytes()


@st.composite
def infer_calls(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of a V2 inference call that is valid but for 0-2 things."""
    model = draw(st.sampled_from(sorted(MODELS)))
    version = draw(st.sampled_from([None] * 6 + ["1", "2", "0", "-1", "x", "9" * 30, "%00"]))
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    rows = draw(st.sampled_from([1, 1, 2, 3, 0, 9]))
    binary_parts: list[bytes] = []
    items = []
    for name, datatype, shape in MODELS[model]:
        real_shape = [
            rows if d == -1 and i == 0 else (3 if d == -1 else d) for i, d in enumerate(shape)
        ]
        values = draw(_valid_values(datatype, math.prod(real_shape)))
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": real_shape}
        if draw(st.booleans()):
            raw = _raw(datatype, values)
            item["parameters"] = {"binary_data_size": len(raw)}
            binary_parts.append(raw)
        else:
            item["data"] = values
        hostile = {
            "name": st.sampled_from(["", "INPUT9", "input ", None]),
            "datatype": st.sampled_from([d.value for d in Datatype] + ["fp32", "STRING", ""]),
            "shape": st.one_of(
                st.lists(st.sampled_from([0, 1, 2, 19, 21, -1, 2**31, 2**63 - 1]), max_size=4),
                json_values,
            ),
            "data": st.one_of(st.lists(scalars, max_size=6), json_values),
            "parameters": st.one_of(
                json_values,
                st.fixed_dictionaries({"binary_data_size": st.sampled_from([-1, 1, 999])}),
            ),
        }
        for field in draw(st.lists(st.sampled_from(sorted(hostile)), max_size=2, unique=True)):
            item[field] = draw(hostile[field])
        items.append(item)
    if draw(one_in(6)):
        items = items[:-1] if items else items  # an input missing
    doc: dict[str, Any] = {"inputs": items}
    if draw(one_in(3)):
        doc["outputs"] = [{"name": draw(st.sampled_from(["output", "OUTPUT0", "nope", ""]))}]
    if draw(one_in(3)):
        doc["parameters"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "binary_data_output": st.booleans() | json_values,
                    "timeout": st.sampled_from([0, 1, 10**6, -1, 1e309, "x"]),
                },
            )
        )
    header = json.dumps(doc).encode()
    tail = b"".join(binary_parts)
    if draw(one_in(8)):
        tail = draw(st.binary(max_size=16))
    headers = {
        "content-type": draw(
            st.sampled_from(["application/json", "text/plain", "", "application/octet-stream"])
        )
    }
    if tail:
        headers["inference-header-content-length"] = str(
            len(header) + draw(st.sampled_from([0] * 6 + [-1, 1, -(10**6)]))
        )
    elif draw(one_in(8)):
        headers["inference-header-content-length"] = draw(
            st.sampled_from(["x", "-1", "1e3", "99999"])
        )
    if draw(one_in(6)):
        headers["x-modelyard-timeout-ms"] = draw(
            st.sampled_from(["0", "1", "x", "-5", "inf", "1e400"])
        )
    if draw(one_in(6)):
        # Any value a client can send (httpx refuses leading or trailing blanks itself).
        headers["x-user"] = draw(st.from_regex(r"[!-~]([ -~]{0,6}[!-~])?", fullmatch=True))
    if draw(one_in(10)):
        headers["content-encoding"] = "gzip"
    return path, headers, header + tail


@st.composite
def other_calls(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(method, path, body) for the other routes, hostile paths and methods included."""
    model = draw(st.sampled_from([*sorted(MODELS), "nosuch", "", "%2e%2e", "a" * 300]))
    path = draw(
        st.sampled_from(
            [
                f"/v2/models/{model}",
                f"/v2/models/{model}/ready",
                f"/v2/models/{model}/versions/1",
                f"/v2/models/{model}/config",
                f"/v2/models/{model}/versions/x/config",
                f"/v2/models/{model}/stats",
                f"/v2/models/{model}/versions/{'9' * 30}/stats",
                "/v2/models/stats",
                f"/v2/repository/models/{model}/load",
                f"/v2/repository/models/{model}/unload",
                "/v2/repository/index",
                f"/v1/models/{model}",
                f"/v1/models/{model}:predict",
                f"/v1/models/{model}:explain",
                "/v2",
                "/ui/api/timeseries?minutes=0",
                "/ui/api/timeseries?minutes=x&limit=-1",
                "/ui/%00",
                "/metrics",
            ]
        )
    )
    if path.endswith("/unload"):  # unloading is a valid request; keep the models served
        path = path.replace("/unload", "/load")
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]))
    v1 = {"instances": draw(json_values)} if draw(st.booleans()) else {"inputs": draw(json_values)}
    body = draw(st.sampled_from([b"", b"{", json.dumps(v1).encode(), b"\xff\xfe"]))
    return method, path, body


#: 5xx answers that are not failures: the server could not meet the request's own deadline
#: (e.g. ``parameters.timeout`` of 1 us) or shed load. A hang shows as the client's timeout.
NOT_FAILURES = {503, 504}


def _check(response: httpx.Response, what: str) -> None:
    status = response.status_code
    assert status < 500 or status in NOT_FAILURES, (what, status, response.text[:500])
    if response.status_code >= 400 and response.request.method != "HEAD":
        doc = response.json()
        assert isinstance(doc.get("error"), str) and doc["error"], (what, doc)


FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


@FUZZ
@given(call=infer_calls())
def test_hostile_inference_calls_get_client_errors_not_server_errors(
    client: httpx.Client, call: tuple[str, dict[str, str], bytes]
) -> None:
    path, headers, body = call
    _check(
        client.post(path, content=body, headers=headers), f"POST {path} {headers} {body[:300]!r}"
    )


@FUZZ
@given(call=other_calls())
def test_hostile_calls_to_other_routes_get_client_errors_not_server_errors(
    client: httpx.Client, call: tuple[str, str, bytes]
) -> None:
    method, path, body = call
    _check(client.request(method, path, content=body), f"{method} {path} {body[:300]!r}")


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


#: gRPC answers that mean the server itself failed rather than refused the request. (Its own
#: DEADLINE_EXCEEDED, for a request's timeout parameter, is an answer; a hang is not: see below.)
SERVER_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
CLIENT_TIMEOUT_S = 10.0


@FUZZ
@given(
    msg=grpc_infer_requests(),
    model=st.sampled_from(sorted(MODELS)),
    version=st.sampled_from(["", "", "", "1", "2", "x", "9" * 30]),
)
def test_hostile_grpc_calls_get_client_errors_not_server_errors(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    msg: pb.ModelInferRequest,
    model: str,
    version: str,
) -> None:
    # The helper's hostile messages, aimed at a real model: its name, version and input names.
    msg.model_name, msg.model_version = model, version
    for tensor, (name, _, _) in zip(msg.inputs, MODELS[model], strict=False):
        tensor.name = name
    wire = service_pb2.ModelInferRequest.FromString(msg.SerializeToString())
    started = time.monotonic()
    try:
        stub.ModelInfer(wire, timeout=CLIENT_TIMEOUT_S)
    except grpc.RpcError as exc:
        assert exc.code() not in SERVER_FAILURES, (exc.code(), exc.details(), msg)
        assert time.monotonic() - started < CLIENT_TIMEOUT_S * 0.9, ("no answer (hung)", msg)
        assert exc.details(), msg


@pytest.mark.parametrize("name", ["", "nosuch", "ep", "a" * 300, "%2e%2e", "x\x00", "stats"])
@pytest.mark.parametrize("version", ["", "1", "x", "-1", "9" * 30])
def test_hostile_grpc_config_and_statistics_calls_get_client_errors(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, name: str, version: str
) -> None:
    calls = [
        lambda: stub.ModelConfig(service_pb2.ModelConfigRequest(name=name, version=version)),
        lambda: stub.ModelStatistics(
            service_pb2.ModelStatisticsRequest(name=name, version=version)
        ),
    ]
    for call in calls:
        try:
            call()
        except grpc.RpcError as exc:
            assert exc.code() not in SERVER_FAILURES, (exc.code(), exc.details(), name, version)
            assert exc.details()


def test_the_server_is_still_healthy_and_correct_after_the_fuzzing(
    server: ServerProcess, client: httpx.Client
) -> None:
    assert server.proc.poll() is None
    assert client.get("/v2/health/ready").status_code == 200
    row = {"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [1.0] * 20}
    for model in ("linear", "batched", "ep"):
        r = client.post(f"/v2/models/{model}/infer", json={"inputs": [row]})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [20.0]
    assert "Traceback" not in server.log()


# ---- what the fuzzing found (deterministic: also for values it rarely draws) ---------------------
VALID = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [1.0] * 20}]}


@pytest.mark.parametrize("version", ["9" * 30, str(2**63), "\u00b2", "\u0661", "0", "-1", "1.0"])
def test_versions_no_registry_can_hold_are_client_errors(
    client: httpx.Client, version: str
) -> None:
    for model in ("linear", "ep"):
        r = client.post(f"/v2/models/{model}/versions/{version}/infer", json=VALID)
        _check(r, f"{model} version {version!r}")
        assert r.status_code in (400, 404), r.text


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("inference-header-content-length", "\u00b2"),
        ("inference-header-content-length", "1e3"),
        ("x-modelyard-timeout-ms", "\u00b2"),
        ("x-modelyard-timeout-ms", "nan"),
    ],
)
def test_header_values_that_only_look_like_numbers_are_client_errors(
    client: httpx.Client, header: str, value: str
) -> None:
    body = json.dumps(VALID).encode()
    latin1 = {header: value.encode("latin-1")}  # what a raw HTTP client can send
    r = client.post("/v2/models/linear/infer", content=body, headers=latin1)
    _check(r, f"{header}: {value!r}")
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("query", ["minutes=%B2", "limit=%D9%A1", "step=99999999999999999999"])
def test_dashboard_query_values_that_only_look_like_numbers_are_client_errors(
    client: httpx.Client, query: str
) -> None:
    r = client.get(f"/ui/api/timeseries?{query}")
    _check(r, query)
    assert r.status_code == 400, r.text


def test_inputs_disagreeing_on_the_batch_size_are_client_errors(client: httpx.Client) -> None:
    def tensor(name: str, rows: int) -> dict[str, Any]:
        return {"name": name, "datatype": "INT32", "shape": [rows, 16], "data": [1] * 16 * rows}

    r = client.post(
        "/v2/models/simple/infer", json={"inputs": [tensor("INPUT0", 2), tensor("INPUT1", 3)]}
    )
    _check(r, "simple with 2 and 3 rows")
    assert r.status_code == 400 and "dimension 'batch'" in r.json()["error"], r.text


def test_nan_from_a_triton_client_is_refused_by_the_model_not_by_the_json_reader(
    client: httpx.Client,
) -> None:
    # tritonclient writes NaN literals (Python's json.dumps), as Triton reads them; the model
    # (no allow_nonfinite in its signature) then refuses the value, saying so.
    body = '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [NaN'
    body += ", 1.0" * 19 + "]}]}"
    r = client.post("/v2/models/linear/infer", content=body.encode())
    assert r.status_code == 400, r.text
    assert "NaN or Inf" in r.json()["error"], r.text
