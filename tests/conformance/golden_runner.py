"""Send the golden V2 cases of tests/conformance/golden/ to a real server, four ways.

* ``rest-json``: the request object as JSON, as the golden README prescribes (raw httpx POST);
* ``rest-binary``: the same tensors in the binary tensor data extension, all outputs binary;
* ``grpc-typed``: a ``ModelInferRequest`` with typed ``InferTensorContents`` (FP16 raw, as the
  README says: it has no contents field);
* ``grpc-raw``: every input in ``raw_input_contents``, as tritonclient sends them.

Each returns ``(http_status, doc)`` where ``doc`` is shaped like a V2 JSON response (or
``{"error": message}``), ready for :func:`tests.conformance.golden.cases.check_response`. The
protobuf messages are tritonclient's own, so the wire format is the official one, not ours.
"""

from __future__ import annotations

import struct
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
from tritonclient.grpc import service_pb2, service_pb2_grpc

from modelyard.types import Datatype
from tests.conformance.golden.cases import GoldenCase

TRANSPORTS = ("rest-json", "rest-binary", "grpc-typed", "grpc-raw")

# The README's mapping of expected HTTP statuses to gRPC codes, read backwards.
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

_CONTENTS_FIELD: dict[Datatype, str] = {
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


def run_case(
    transport: str, case: GoldenCase, http: httpx.Client, channel: grpc.Channel
) -> tuple[int, dict[str, Any]]:
    if transport == "rest-json":
        reply = http.post(case.rest_path, content=orjson.dumps(case.body), headers=_JSON)
        return reply.status_code, reply.json()
    if transport == "rest-binary":
        return _run_rest_binary(case, http)
    return run_grpc(case, channel, raw=transport == "grpc-raw")


def run_grpc(case: GoldenCase, channel: grpc.Channel, *, raw: bool) -> tuple[int, dict[str, Any]]:
    """Send the case over gRPC; ``(http_status, doc)`` with the status mapped back from gRPC's."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        response = stub.ModelInfer(grpc_request(case, raw=raw), timeout=30)
    except grpc.RpcError as exc:
        error: Any = exc
        return GRPC_TO_HTTP.get(error.code(), 500), {"error": error.details() or ""}
    return 200, grpc_response_doc(response)


_JSON = {"Content-Type": "application/json"}


# ---- tensors ----------------------------------------------------------------------------------
def _datatype(tensor: dict[str, Any]) -> Datatype | None:
    try:
        return Datatype(str(tensor.get("datatype")))
    except ValueError:
        return None  # an error case (e.g. FP8): sent as is, the server must say so


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flat(item)]
    return [data]


def _raw(datatype: Datatype, data: Any) -> bytes:
    values = _flat(data)
    if datatype is Datatype.BYTES:
        items = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        return b"".join(struct.pack("<I", len(v)) + v for v in items)
    return (
        np.asarray(values, dtype=datatype.numpy_dtype)
        .astype("<" + datatype.numpy_dtype.str[1:])
        .tobytes()
    )


def _unraw(datatype: Datatype, raw: bytes) -> list[Any]:
    if datatype is Datatype.BYTES:
        out: list[Any] = []
        pos = 0
        while pos < len(raw):
            (length,) = struct.unpack_from("<I", raw, pos)
            out.append(raw[pos + 4 : pos + 4 + length])
            pos += 4 + length
        return out
    values: list[Any] = np.frombuffer(raw, dtype=datatype.numpy_dtype.newbyteorder("<")).tolist()
    return values


# ---- REST with the binary tensor data extension -----------------------------------------------
def _run_rest_binary(case: GoldenCase, http: httpx.Client) -> tuple[int, dict[str, Any]]:
    header = {k: v for k, v in case.body.items() if k != "inputs"}
    header["parameters"] = {**case.body.get("parameters", {}), "binary_data_output": True}
    if "outputs" in header:
        header["outputs"] = [
            {**o, "parameters": {**o.get("parameters", {}), "binary_data": True}}
            for o in header["outputs"]
        ]
    inputs, blobs = [], []
    for tensor in case.body["inputs"]:
        datatype = _datatype(tensor)
        if datatype is None or "data" not in tensor:
            inputs.append(tensor)
            continue
        blob = _raw(datatype, tensor["data"])
        meta = {k: v for k, v in tensor.items() if k != "data"}
        meta["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(blob)}
        inputs.append(meta)
        blobs.append(blob)
    head = orjson.dumps({**header, "inputs": inputs})
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    reply = http.post(case.rest_path, content=head + b"".join(blobs), headers=headers)
    return reply.status_code, parse_binary_response(reply)


def parse_binary_response(reply: httpx.Response) -> dict[str, Any]:
    """A V2 response with binary outputs as a JSON-shaped dict (binary data decoded)."""
    length = reply.headers.get("Inference-Header-Content-Length")
    if length is None:
        doc: dict[str, Any] = reply.json()
        return doc
    content = reply.content
    doc = orjson.loads(content[: int(length)])
    pos = int(length)
    for output in doc.get("outputs", []):
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            continue
        output["data"] = _unraw(Datatype(output["datatype"]), content[pos : pos + size])
        pos += size
    assert pos == len(content), f"{len(content) - pos} unread bytes after the binary outputs"
    return doc


# ---- gRPC -------------------------------------------------------------------------------------
def _set_param(param: Any, value: Any) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = str(value)


def grpc_request(case: GoldenCase, *, raw: bool) -> Any:
    """The golden case as tritonclient's ``ModelInferRequest`` (see the golden README)."""
    body = case.body
    request = service_pb2.ModelInferRequest(
        model_name=case.model_name, model_version=case.model_version or "", id=body.get("id", "")
    )
    for key, value in body.get("parameters", {}).items():
        _set_param(request.parameters[key], value)
    for tensor in body["inputs"]:
        datatype = _datatype(tensor)
        entry = request.inputs.add(
            name=tensor.get("name", ""),
            datatype=str(tensor.get("datatype", "")),
            shape=tensor.get("shape", []),
        )
        if datatype is None or "data" not in tensor:
            continue
        if raw or datatype is Datatype.FP16:
            request.raw_input_contents.append(_raw(datatype, tensor["data"]))
            continue
        values = _flat(tensor["data"])
        if datatype is Datatype.BYTES:
            values = [v.encode() if isinstance(v, str) else v for v in values]
        getattr(entry.contents, _CONTENTS_FIELD[datatype]).extend(values)
    for output in body.get("outputs", []):
        out = request.outputs.add(name=output["name"])
        for key, value in output.get("parameters", {}).items():
            if key != "binary_data":  # an HTTP-only flag
                _set_param(out.parameters[key], value)
    return request


def grpc_response_doc(response: Any) -> dict[str, Any]:
    """A ``ModelInferResponse`` as a V2 JSON-shaped dict."""
    outputs = []
    raw = list(response.raw_output_contents)
    for i, out in enumerate(response.outputs):
        datatype = Datatype(out.datatype)
        if raw:
            data = _unraw(datatype, raw[i])
        else:
            data = list(getattr(out.contents, _CONTENTS_FIELD[datatype]))
        outputs.append(
            {"name": out.name, "datatype": out.datatype, "shape": list(out.shape), "data": data}
        )
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id:
        doc["id"] = response.id
    return doc
