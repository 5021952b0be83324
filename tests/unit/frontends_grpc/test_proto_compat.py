"""Our grpc_service.proto is wire-compatible with Triton's: every message and RPC we declare has
the same fields (number, type, label, message type) and paths as in tritonclient's copy."""

from __future__ import annotations

import pytest
import tritonclient.grpc.service_pb2 as triton_pb
from google.protobuf import descriptor_pb2

from modelyard.frontends.proto import grpc_service_pb2 as pb

# Fields ModelYard reserves instead of declaring, because it answers UNIMPLEMENTED there.
RESERVED = {("ModelConfigResponse", "config"), ("ModelStatisticsResponse", "model_stats")}


def _file(module: object) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)  # type: ignore[attr-defined]
    return proto


def _messages(
    messages: list[descriptor_pb2.DescriptorProto], prefix: str = ""
) -> dict[str, descriptor_pb2.DescriptorProto]:
    out = {}
    for message in messages:
        out[prefix + message.name] = message
        out.update(_messages(list(message.nested_type), f"{prefix}{message.name}."))
    return out


OURS = _messages(list(_file(pb).message_type))
THEIRS = _messages(list(_file(triton_pb).message_type))


def test_same_package() -> None:
    assert _file(pb).package == _file(triton_pb).package == "inference"


@pytest.mark.parametrize("name", sorted(OURS))
def test_message_matches_triton(name: str) -> None:
    assert name in THEIRS, f"{name} is not a Triton message"
    ours = {f.name: f for f in OURS[name].field}
    theirs = {f.name: f for f in THEIRS[name].field}
    top = name.split(".")[0]
    missing = {n for n in theirs if n not in ours and (top, n) not in RESERVED}
    assert not missing, f"{name} lacks Triton fields {missing}"
    for field_name, field in ours.items():
        other = theirs[field_name]
        assert (field.number, field.type, field.label, field.type_name) == (
            other.number,
            other.type,
            other.label,
            other.type_name,
        ), f"{name}.{field_name} differs from Triton"
        assert field.HasField("oneof_index") == other.HasField("oneof_index")
    reserved_numbers = {r.start for r in OURS[name].reserved_range}
    for top_name, field_name in RESERVED:
        if name == top_name:
            assert theirs[field_name].number in reserved_numbers


def test_service_methods_match_triton() -> None:
    (ours,) = _file(pb).service
    (theirs,) = _file(triton_pb).service
    assert ours.name == theirs.name == "GRPCInferenceService"
    triton_methods = {m.name: m for m in theirs.method}
    for method in ours.method:
        other = triton_methods[method.name]
        assert (
            method.input_type,
            method.output_type,
            method.client_streaming,
            method.server_streaming,
        ) == (other.input_type, other.output_type, other.client_streaming, other.server_streaming)


def test_messages_cross_decode() -> None:
    ours = pb.ModelInferRequest(model_name="m", id="1", raw_input_contents=[b"\x01\x00"])
    ours.inputs.add(name="x", datatype="INT8", shape=[2]).parameters["p"].uint64_param = 7
    theirs = triton_pb.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.inputs[0].parameters["p"].uint64_param == 7
    assert pb.ModelInferRequest.FromString(theirs.SerializeToString()) == ours
