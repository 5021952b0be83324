"""Our grpc_service.proto is wire-compatible with Triton's: every message, enum and RPC we declare
has the same fields (number, type, label, message type) and paths as in tritonclient's copies of
grpc_service.proto and model_config.proto."""

from __future__ import annotations

import pytest
import tritonclient.grpc.model_config_pb2 as triton_config_pb
import tritonclient.grpc.service_pb2 as triton_pb
from google.protobuf import descriptor_pb2

from modelyard.frontends.proto import grpc_service_pb2 as pb

# Fields ModelYard reserves instead of declaring, because it never sends them.
RESERVED = {("ModelStatistics", "memory_usage"), ("ModelStatistics", "response_stats")}
# Model configuration messages of which ModelYard declares the subset it fills in: each declared
# field must match Triton's, but Triton has many more (optimisation, sequence batching, ...).
SUBSETS = {
    "ModelConfig",
    "ModelInput",
    "ModelOutput",
    "ModelInstanceGroup",
    "ModelDynamicBatching",
}


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
THEIRS = _messages(list(_file(triton_pb).message_type) + list(_file(triton_config_pb).message_type))


def _enums(module: object) -> dict[str, dict[str, int]]:
    proto = _file(module)
    found = {e.name: {v.name: v.number for v in e.value} for e in proto.enum_type}
    for name, message in _messages(list(proto.message_type)).items():
        for enum in message.enum_type:
            found[f"{name}.{enum.name}"] = {v.name: v.number for v in enum.value}
    return found


OUR_ENUMS = _enums(pb)
THEIR_ENUMS = {**_enums(triton_pb), **_enums(triton_config_pb)}


def test_same_package() -> None:
    assert _file(pb).package == _file(triton_pb).package == "inference"


@pytest.mark.parametrize("name", sorted(OURS))
def test_message_matches_triton(name: str) -> None:
    assert name in THEIRS, f"{name} is not a Triton message"
    ours = {f.name: f for f in OURS[name].field}
    theirs = {f.name: f for f in THEIRS[name].field}
    top = name.split(".")[0]
    if top not in SUBSETS:
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


@pytest.mark.parametrize("name", sorted(OUR_ENUMS))
def test_enum_matches_triton(name: str) -> None:
    assert OUR_ENUMS[name] == THEIR_ENUMS[name]


def test_oneofs_match_triton() -> None:
    for name, message in OURS.items():
        theirs = [o.name for o in THEIRS[name].oneof_decl]
        assert [o.name for o in message.oneof_decl] == theirs[: len(message.oneof_decl)], name


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


def test_config_and_statistics_cross_decode() -> None:
    """Our ModelConfigResponse and ModelStatisticsResponse read back as Triton's messages."""
    config = pb.ModelConfig(name="m", platform="onnx", backend="onnx", max_batch_size=8)
    config.input.add(name="x", data_type=pb.TYPE_STRING, dims=[3])
    config.output.add(name="y", data_type=pb.TYPE_FP32, dims=[1]).reshape.shape[:] = []
    config.instance_group.add(name="m", kind=pb.ModelInstanceGroup.KIND_CPU, count=4)
    config.dynamic_batching.max_queue_delay_microseconds = 500
    config.parameters["served_version"].string_value = "2"
    theirs = triton_pb.ModelConfigResponse.FromString(
        pb.ModelConfigResponse(config=config).SerializeToString()
    ).config
    assert theirs.input[0].data_type == triton_config_pb.TYPE_STRING
    assert list(theirs.input[0].dims) == [3]
    assert theirs.instance_group[0].kind == triton_config_pb.ModelInstanceGroup.KIND_CPU
    assert theirs.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert theirs.dynamic_batching.max_queue_delay_microseconds == 500
    assert theirs.parameters["served_version"].string_value == "2"
    assert (theirs.backend, theirs.max_batch_size) == ("onnx", 8)

    stats = pb.ModelStatistics(name="m", version="2", last_inference=17, inference_count=3)
    stats.inference_stats.fail.count = 1
    stats.batch_stats.add(batch_size=4).compute_infer.ns = 99
    decoded = triton_pb.ModelStatisticsResponse.FromString(
        pb.ModelStatisticsResponse(model_stats=[stats]).SerializeToString()
    ).model_stats[0]
    assert (decoded.name, decoded.version, decoded.last_inference) == ("m", "2", 17)
    assert decoded.inference_stats.fail.count == 1
    assert decoded.batch_stats[0].compute_infer.ns == 99
