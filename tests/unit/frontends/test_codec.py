"""The V2 wire codec: every datatype through JSON and binary, nesting, BYTES, and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient

from modelyard.errors import InferenceError, InvalidInputError, PayloadTooLargeError
from modelyard.frontends.codec import (
    array_from_json,
    array_from_raw,
    decode_infer_request,
    encode_infer_response,
    raw_from_array,
)
from modelyard.types import Array, Datatype, InferRequest, InferResponse

MAX = 1 << 20


def _values(dt: Datatype) -> Array:
    """Values that stress ``dt``: limits, zero, signs, subnormals."""
    if dt is Datatype.BOOL:
        return np.array([[True, False, True]])
    if dt is Datatype.BYTES:
        return np.array([[b"a", b"", "héllo wörld".encode()]], dtype=object)
    np_dt = dt.numpy_dtype
    if np_dt.kind in "iu":
        info = np.iinfo(np_dt)
        return np.array([[info.min, 0, info.max], [1, info.max - 1, info.min + 1]], dtype=np_dt)
    finfo = np.finfo(np_dt)
    smallest_subnormal = finfo.smallest_subnormal
    return np.array(
        [[finfo.max, finfo.min, finfo.tiny], [smallest_subnormal, -0.0, 0.1]], dtype=np_dt
    )


def _decode(doc: dict[str, Any]) -> InferRequest:
    return decode_infer_request(orjson.dumps(doc), None, MAX)


def _one_input(dt: Datatype, shape: list[int], data: Any, **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": dt.value, "shape": shape, "data": data, **extra}]}


def _wire_bytes(array: Array, dt: Datatype) -> bytes:
    if dt is Datatype.BYTES:
        return b"".join(len(b).to_bytes(4, "little") + b for b in array.flat)
    return array.astype(dt.numpy_dtype.newbyteorder("<")).tobytes()


@pytest.mark.parametrize("dt", list(Datatype))
def test_every_datatype_round_trips_exactly_through_json(dt: Datatype) -> None:
    expected = _values(dt)
    data = [b.decode() for b in expected.flat] if dt is Datatype.BYTES else expected.tolist()
    request = _decode(_one_input(dt, list(expected.shape), data))
    got = request.inputs["x"]
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    if got.dtype.kind == "f":  # -0.0 keeps its sign
        assert np.signbit(got).tolist() == np.signbit(expected).tolist()

    body, header_length = encode_infer_response(InferResponse("m", "1", {"y": got}), request)
    assert header_length is None
    (out,) = orjson.loads(body)["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("y", dt.value, list(expected.shape))
    again = array_from_json(out["data"], dt, tuple(out["shape"]), "y")
    np.testing.assert_array_equal(again, expected)
    assert again.dtype == expected.dtype


@pytest.mark.parametrize("dt", list(Datatype))
def test_every_datatype_round_trips_exactly_through_binary(dt: Datatype) -> None:
    expected = _values(dt)
    raw = _wire_bytes(expected, dt)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": dt.value,
                    "shape": list(expected.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    request = decode_infer_request(header + raw, len(header), MAX)
    got = request.inputs["x"]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert request.input_parameters == {}  # binary_data_size is framing, not a parameter

    body, header_length = encode_infer_response(InferResponse("m", "1", {"y": got}), request)
    assert header_length is not None
    (out,) = orjson.loads(body[:header_length])["outputs"]
    assert "data" not in out
    assert out["parameters"] == {"binary_data_size": len(raw)}
    assert body[header_length:] == raw


def test_binary_input_is_a_zero_copy_read_only_view() -> None:
    raw = np.arange(6, dtype="<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": 24},
                }
            ]
        }
    )
    got = decode_infer_request(header + raw, len(header), MAX).inputs["x"]
    assert not got.flags.owndata and not got.flags.writeable
    np.testing.assert_array_equal(got, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_mixed_json_and_binary_inputs_in_order() -> None:
    a = np.arange(4, dtype=np.int32)
    b = np.array([b"x", b"\xff\x00"], dtype=object)
    raw_b = _wire_bytes(b, Datatype.BYTES)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "a", "datatype": "INT32", "shape": [4], "data": a.tolist()},
                {
                    "name": "b",
                    "datatype": "BYTES",
                    "shape": [2],
                    "parameters": {"binary_data_size": len(raw_b), "note": "kept"},
                },
                {
                    "name": "c",
                    "datatype": "UINT8",
                    "shape": [1],
                    "parameters": {"binary_data_size": 1},
                },
            ]
        }
    )
    request = decode_infer_request(header + raw_b + b"\x07", len(header), MAX)
    np.testing.assert_array_equal(request.inputs["a"], a)
    assert request.inputs["b"].tolist() == [b"x", b"\xff\x00"]  # non-UTF-8 kept as bytes
    assert request.inputs["c"].tolist() == [7]
    assert request.input_parameters == {"b": {"note": "kept"}}


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        ([[1, 2], [3, 4], [5, 6]], [3, 2]),  # natural nesting
        ([1, 2, 3, 4, 5, 6], [3, 2]),  # flat
        ([[1, 2, 3], [4, 5, 6]], [3, 2]),  # other nesting, same count: row-major order wins
    ],
)
def test_flat_and_nested_data(data: list[Any], shape: list[int]) -> None:
    got = _decode(_one_input(Datatype.FP64, shape, data)).inputs["x"]
    np.testing.assert_array_equal(got, np.arange(1, 7, dtype=np.float64).reshape(3, 2))


def test_nested_bytes_and_empty_tensors() -> None:
    got = _decode(_one_input(Datatype.BYTES, [2, 1], [["a"], ["b"]])).inputs["x"]
    assert got.shape == (2, 1) and got.tolist() == [[b"a"], [b"b"]]
    empty = _decode(_one_input(Datatype.INT64, [0, 3], [])).inputs["x"]
    assert empty.shape == (0, 3) and empty.dtype == np.int64


def test_json_bools_and_integral_numbers_are_accepted() -> None:
    assert _decode(_one_input(Datatype.BOOL, [3], [True, False, 1])).inputs["x"].tolist() == [
        True,
        False,
        True,
    ]
    assert _decode(_one_input(Datatype.INT32, [2], [2.0, -3])).inputs["x"].tolist() == [2, -3]


def test_tritonclient_requests_decode_and_responses_parse() -> None:
    x = np.arange(32, dtype=np.int32).reshape(2, 16)
    names = np.array([[b"a\xff"], [b"b"]], dtype=object)
    in0 = httpclient.InferInput("INPUT0", [2, 16], "INT32")
    in0.set_data_from_numpy(x, binary_data=True)
    in1 = httpclient.InferInput("INPUT1", [2, 1], "BYTES")
    in1.set_data_from_numpy(names, binary_data=True)
    in2 = httpclient.InferInput("INPUT2", [2], "FP16")
    in2.set_data_from_numpy(np.array([0.5, 65504], dtype=np.float16), binary_data=False)
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        [in0, in1, in2], request_id="r1"
    )
    request = decode_infer_request(body, header_length, MAX)
    assert request.id == "r1"
    np.testing.assert_array_equal(request.inputs["INPUT0"], x)
    assert request.inputs["INPUT1"].tolist() == names.tolist()
    assert request.inputs["INPUT2"].tolist() == [0.5, 65504.0]

    response = InferResponse("m", "1", {"OUT": x * 2, "NAMES": names})
    out_body, out_length = encode_infer_response(response, request)
    result = httpclient.InferenceServerClient.parse_response_body(
        out_body, header_length=out_length
    )
    np.testing.assert_array_equal(result.as_numpy("OUT"), x * 2)
    assert result.as_numpy("NAMES").tolist() == names.tolist()
    assert result.get_response()["id"] == "r1"


def test_non_utf8_bytes_output_goes_binary_even_when_json_is_asked() -> None:
    request = InferRequest(inputs={})
    outputs = {"ok": np.array(["héllo", b"x"], dtype=object), "raw": np.array([b"\xff"], object)}
    body, header_length = encode_infer_response(InferResponse("m", "1", outputs), request)
    assert header_length is not None
    ok, raw = orjson.loads(body[:header_length])["outputs"]
    assert ok["data"] == ["héllo", "x"]
    assert raw["parameters"] == {"binary_data_size": 5}
    assert body[header_length:] == b"\x01\x00\x00\x00\xff"


def test_per_output_binary_flag_overrides_the_request_default() -> None:
    request = InferRequest(
        inputs={},
        parameters={"binary_data_output": True},
        output_parameters={"json": {"binary_data": False}},
    )
    outputs: dict[str, Array] = {
        "json": np.array([1, 2], np.int64),
        "bin": np.array([1.5], np.float32),
    }
    body, header_length = encode_infer_response(InferResponse("m", "7", outputs, id="q"), request)
    assert header_length is not None
    doc = orjson.loads(body[:header_length])
    assert doc["model_version"] == "7" and doc["id"] == "q"
    assert doc["outputs"][0]["data"] == [1, 2]
    assert doc["outputs"][1]["parameters"] == {"binary_data_size": 4}
    assert body[header_length:] == np.float32(1.5).tobytes()


def test_non_contiguous_and_big_endian_outputs_encode_correctly() -> None:
    base = np.arange(12, dtype=">i4").reshape(3, 4)
    view = base[:, ::2]
    body, _ = encode_infer_response(InferResponse("m", "1", {"y": view}), InferRequest(inputs={}))
    (out,) = orjson.loads(body)["outputs"]
    assert out["shape"] == [3, 2] and out["data"] == view.ravel().tolist()
    assert raw_from_array(view, Datatype.INT32) == view.astype("<i4").tobytes()


def test_output_with_no_v2_datatype_is_an_inference_error() -> None:
    with pytest.raises(InferenceError, match="'y'"):
        encode_infer_response(
            InferResponse("m", "1", {"y": np.zeros(2, np.complex64)}), InferRequest(inputs={})
        )


def _input(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
    base.update(fields)
    return {"inputs": [{k: v for k, v in base.items() if v is not ...}]}


BAD_JSON: dict[str, tuple[dict[str, Any] | list[Any] | bytes, str]] = {
    "not_an_object": ([1, 2], "JSON object"),
    "inputs_missing": ({}, "inputs"),
    "inputs_not_list": ({"inputs": {}}, "inputs"),
    "input_not_object": ({"inputs": [3]}, "inputs[0]"),
    "name_missing": (_input(name=...), "inputs[0].name"),
    "name_empty": (_input(name=""), "inputs[0].name"),
    "duplicate_name": ({"inputs": _input()["inputs"] * 2}, "twice"),
    "datatype_missing": (_input(datatype=...), "datatype"),
    "datatype_unknown": (_input(datatype="FP8"), "datatype"),
    "shape_missing": (_input(shape=...), "shape"),
    "shape_negative": (_input(shape=[-1]), "shape"),
    "shape_not_ints": (_input(shape=[2.0]), "shape"),
    "shape_bool": (_input(shape=[True, 2]), "shape"),
    "data_missing": (_input(data=...), "data"),
    "data_not_list": (_input(data=1.0), "data"),
    "count_mismatch": (_input(shape=[3]), "3"),
    "ragged": (_input(shape=[2, 2], data=[[1.0, 2.0], [3.0]]), "data"),
    "string_in_fp32": (_input(data=["a", 1.0]), "data"),
    "null_in_fp32": (_input(data=[None, 1.0]), "data"),
    "fp32_overflow": (_input(data=[1e39, 1.0]), "FP32"),
    "fp16_overflow": (_input(datatype="FP16", data=[70000.0, 1.0]), "FP16"),
    "uint8_out_of_range": (_input(datatype="UINT8", data=[300, 1]), "UINT8"),
    "int32_fraction": (_input(datatype="INT32", data=[1.5, 1]), "INT32"),
    "int8_float_out_of_range": (_input(datatype="INT8", data=[200.0, 1]), "INT8"),
    "uint64_negative": (_input(datatype="UINT64", data=[-1, 1]), "UINT64"),
    "uint64_too_big": (
        b'{"inputs":[{"name":"x","datatype":"UINT64","shape":[1],"data":[18446744073709551616]}]}',
        "UINT64",
    ),
    "int64_too_big": (_input(datatype="INT64", data=[2**63, 1]), "INT64"),
    "bool_two": (_input(datatype="BOOL", data=[2, 1]), "BOOL"),
    "bool_string": (_input(datatype="BOOL", data=["yes", True]), "BOOL"),
    "bytes_number": (_input(datatype="BYTES", data=[1, "a"]), "BYTES"),
    "bytes_count": (_input(datatype="BYTES", data=["a"]), "shape"),
    "id_not_string": ({**_input(), "id": 5}, "id"),
    "parameters_not_object": ({**_input(), "parameters": [1]}, "parameters"),
    "input_parameters_not_object": (_input(parameters=3), "parameters"),
    "shared_memory": (_input(parameters={"shared_memory_region": "r"}), "shared-memory"),
    "outputs_not_list": ({**_input(), "outputs": {}}, "outputs"),
    "output_not_object": ({**_input(), "outputs": ["y"]}, "outputs[0]"),
    "output_name_missing": ({**_input(), "outputs": [{}]}, "outputs[0].name"),
    "binary_size_and_data": (_input(parameters={"binary_data_size": 8}), "not both"),
    "binary_size_negative": (_input(data=..., parameters={"binary_data_size": -1}), "binary"),
    "binary_size_past_end": (_input(data=..., parameters={"binary_data_size": 8}), "binary"),
}


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_json_requests_name_the_field(case: str) -> None:
    doc, needle = BAD_JSON[case]
    with pytest.raises(InvalidInputError) as info:
        decode_infer_request(doc if isinstance(doc, bytes) else orjson.dumps(doc), None, MAX)
    assert needle in info.value.message


def _binary(datatype: str, shape: list[int], size: int, payload: bytes) -> tuple[bytes, int]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    return header + payload, len(header)


BAD_BINARY: dict[str, tuple[tuple[bytes, int], str]] = {
    "size_not_shape": (_binary("FP32", [2], 4, b"\0" * 4), "binary_data_size"),
    "leftover_bytes": (_binary("FP32", [1], 4, b"\0" * 6), "2 bytes"),
    "bool_not_0_or_1": (_binary("BOOL", [2], 2, b"\x01\x02"), "BOOL"),
    "bytes_truncated_length": (_binary("BYTES", [2], 6, b"\1\0\0\0a\0"), "ends after 1"),
    "bytes_element_too_long": (_binary("BYTES", [1], 5, b"\x09\0\0\0a"), "claims 9"),
    "bytes_left_over": (_binary("BYTES", [1], 6, b"\1\0\0\0ab"), "left over"),
}


@pytest.mark.parametrize("case", list(BAD_BINARY))
def test_bad_binary_requests_name_the_field(case: str) -> None:
    (body, header_length), needle = BAD_BINARY[case]
    with pytest.raises(InvalidInputError) as info:
        decode_infer_request(body, header_length, MAX)
    assert needle in info.value.message


def test_malformed_json_and_header_length() -> None:
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        decode_infer_request(b'{"inputs": [', None, MAX)
    with pytest.raises(InvalidInputError, match="Inference-Header-Content-Length"):
        decode_infer_request(b"{}", 10, MAX)
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        decode_infer_request(b'{"inputs": []}xx', 5, MAX)


def test_shape_over_the_element_limit_is_payload_too_large() -> None:
    doc = _input(shape=[1000, 1000, 1000], data=[])
    with pytest.raises(PayloadTooLargeError, match="limit"):
        decode_infer_request(orjson.dumps(doc), None, 1000)


def test_array_from_json_infers_shape_when_none() -> None:
    assert array_from_json([[1, 2], [3, 4]], Datatype.INT16, None, "x").shape == (2, 2)
    assert array_from_json([["a", "b"]], Datatype.BYTES, None, "x").shape == (1, 2)
    with pytest.raises(InvalidInputError, match="ragged"):
        array_from_json([["a", "b"], ["c"]], Datatype.BYTES, None, "x")
    deep: list[Any] = ["a"]
    for _ in range(3000):  # deeper than Python's recursion limit
        deep = [deep]
    assert array_from_json(deep, Datatype.BYTES, (1,), "x").tolist() == [b"a"]


def test_array_from_raw_checks_size() -> None:
    with pytest.raises(InvalidInputError, match="needs 8"):
        array_from_raw(b"\0" * 4, Datatype.INT64, (1,), "x")


# ---- non-finite floats as Triton writes them ------------------------------------------------
def _v2_body(datatype: str, data: str) -> bytes:
    text = (
        f'{{"inputs": [{{"name": "x", "datatype": "{datatype}", "shape": [3], "data": {data}}}]}}'
    )
    return text.encode()


def test_nan_and_infinity_literals_are_read_like_triton_reads_them() -> None:
    # tritonclient's HTTP client (Python's json.dumps) and Triton write NaN/Infinity literals.
    got = decode_infer_request(_v2_body("FP32", "[NaN, Infinity, -Infinity]"), None, MAX)
    x = got.inputs["x"]
    assert x.dtype == np.float32 and np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf
    got = decode_infer_request(_v2_body("FP64", "[[1.5], [NaN], [2]]"), None, MAX)
    assert np.isnan(got.inputs["x"][1])


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("FP32", "[null, 1, 2]"),  # null is not a number
        ("FP32", '["nan", 1, 2]'),  # nor is a string, even with a NaN elsewhere below
        ("FP32", '[NaN, "nan", 2]'),
        ("FP32", "[NaN, 1e39, 2]"),  # out of FP32's range: not an infinity the client meant
        ("INT32", "[NaN, 1, 2]"),
        ("FP32", "[NaN, 1, 2"),  # still not JSON
    ],
)
def test_other_non_numbers_stay_client_errors(datatype: str, data: str) -> None:
    with pytest.raises(InvalidInputError):
        decode_infer_request(_v2_body(datatype, data), None, MAX)


def test_tritonclient_json_with_nan_decodes() -> None:
    inp = httpclient.InferInput("x", [1, 2], "FP32")
    inp.set_data_from_numpy(np.array([[np.nan, 1.0]], dtype=np.float32), binary_data=False)
    body, header_length = httpclient.InferenceServerClient.generate_request_body([inp])
    assert b"NaN" in body
    got = decode_infer_request(body, header_length, MAX).inputs["x"]
    assert np.isnan(got[0, 0]) and got[0, 1] == 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["\ud800"], "x: BYTES data holds a string that is not valid Unicode (a lone surrogate)"),
        ([1], "x: BYTES data must be strings"),
    ],
)
def test_bad_bytes_data_is_named(data: list[object], message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        array_from_json(data, Datatype.BYTES, (1,), "x")
    assert info.value.message == message
