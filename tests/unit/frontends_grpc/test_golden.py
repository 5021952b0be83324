"""The transport-neutral golden payloads of tests/conformance/golden, sent over gRPC.

Each JSON request becomes a ``ModelInferRequest`` with typed ``contents`` (FP16 goes raw, as the
golden README says); the answer is turned back into a V2 JSON-shaped dict and checked by the
golden module's own ``check_response``.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor

from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.frontends.proto import grpc_service_pb2_grpc as pb_grpc
from modelyard.types import Datatype
from tests.conformance.golden.cases import GoldenCase, check_response, load_cases

pytestmark = pytest.mark.conformance

# The golden README's HTTP -> gRPC status correspondence, read backwards.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
CONTENTS_FIELD = {
    Datatype.BOOL: "bool_contents",
    Datatype.INT8: "int_contents",
    Datatype.INT16: "int_contents",
    Datatype.INT32: "int_contents",
    Datatype.INT64: "int64_contents",
    Datatype.UINT8: "uint_contents",
    Datatype.UINT16: "uint_contents",
    Datatype.UINT32: "uint_contents",
    Datatype.UINT64: "uint64_contents",
    Datatype.FP32: "fp32_contents",
    Datatype.FP64: "fp64_contents",
    Datatype.BYTES: "bytes_contents",
}
CASES = load_cases()


def flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [leaf for item in data for leaf in flatten(item)]
    return [data]


def to_grpc(case: GoldenCase) -> pb.ModelInferRequest:
    body = case.body
    msg = pb.ModelInferRequest(
        model_name=case.model_name, model_version=case.model_version or "", id=body.get("id", "")
    )
    for key, value in body.get("parameters", {}).items():
        param = msg.parameters[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = str(value)
    for item in body["inputs"]:
        tensor = msg.inputs.add(name=item["name"], datatype=item["datatype"], shape=item["shape"])
        values = flatten(item["data"])
        if item["datatype"] == "FP16":
            msg.raw_input_contents.append(np.asarray(values, dtype="<f2").tobytes())
        elif item["datatype"] in Datatype.__members__:
            datatype = Datatype(item["datatype"])
            if datatype is Datatype.BYTES:
                values = [v.encode() for v in values]
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(values)
        # An unknown datatype travels without data: the server must refuse it by its name.
    for out in body.get("outputs", []):
        msg.outputs.add(name=out["name"])
    return msg


def to_json(response: pb.ModelInferResponse) -> dict[str, Any]:
    outputs = []
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            data: Any = deserialize_bytes_tensor(raw)
        else:
            data = np.frombuffer(raw, dtype=Datatype(tensor.datatype).numpy_dtype)
        outputs.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
                "data": data,
            }
        )
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": outputs,
    }


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden_case_over_grpc(stub: pb_grpc.GRPCInferenceServiceStub, case: GoldenCase) -> None:
    try:
        response = stub.ModelInfer(to_grpc(case))
    except grpc.RpcError as exc:
        status = HTTP_STATUS.get(exc.code(), 500)
        check_response(case, status, {"error": exc.details() or ""})
    else:
        check_response(case, 200, to_json(response))
