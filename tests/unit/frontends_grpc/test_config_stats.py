"""ModelConfig and ModelStatistics: the protobuf encoders, and the RPCs through the official
``tritonclient.grpc`` client (which decodes our answers with Triton's own messages)."""

from __future__ import annotations

import grpc
import pytest
from tritonclient.grpc import InferenceServerClient as Client
from tritonclient.grpc import model_config_pb2 as triton_config
from tritonclient.utils import InferenceServerException

from modelyard.frontends import grpc_codec as codec
from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.frontends.proto import grpc_service_pb2_grpc as pb_grpc
from modelyard.types import (
    BatchStatistics,
    ConfigTensor,
    Datatype,
    ModelConfig,
    ModelStatistics,
    StatDuration,
)
from tests.unit.frontends_grpc.fakes import identity_name

pytestmark = pytest.mark.conformance


def _config(**overrides: object) -> ModelConfig:
    fields: dict[str, object] = {
        "name": "m",
        "version": "3",
        "platform": "onnx",
        "backend": "onnx",
        "max_batch_size": 16,
        "inputs": (ConfigTensor("text", Datatype.BYTES, (-1,)),),
        "outputs": (ConfigTensor("score", Datatype.FP16, (1,), reshape=()),),
        "max_queue_delay_us": 250,
        "instance_count": 4,
        "parameters": {"served_version": "3"},
    }
    fields.update(overrides)
    return ModelConfig(**fields)  # type: ignore[arg-type]


# ---- encoders ---------------------------------------------------------------------------------
def test_encode_model_config() -> None:
    config = codec.encode_model_config(_config()).config
    assert (config.name, config.platform, config.backend) == ("m", "onnx", "onnx")
    assert config.max_batch_size == 16
    (text,) = config.input
    assert (text.name, text.data_type, list(text.dims)) == ("text", pb.TYPE_STRING, [-1])
    assert not text.HasField("reshape")
    (score,) = config.output
    assert (score.data_type, list(score.dims)) == (pb.TYPE_FP16, [1])
    assert score.HasField("reshape") and list(score.reshape.shape) == []
    (group,) = config.instance_group
    assert (group.kind, group.count) == (pb.ModelInstanceGroup.KIND_CPU, 4)
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert {k: v.string_value for k, v in config.parameters.items()} == {"served_version": "3"}


def test_encode_model_config_without_batching_has_no_scheduler() -> None:
    config = codec.encode_model_config(_config(max_batch_size=0, max_queue_delay_us=None)).config
    assert config.max_batch_size == 0
    assert config.WhichOneof("scheduling_choice") is None


@pytest.mark.parametrize("datatype", list(Datatype))
def test_every_datatype_has_triton_enum_value(datatype: Datatype) -> None:
    tensor = ConfigTensor("x", datatype, (2,))
    config = codec.encode_model_config(_config(inputs=(tensor,))).config
    triton_name = "TYPE_STRING" if datatype is Datatype.BYTES else f"TYPE_{datatype.value}"
    assert config.input[0].data_type == triton_config.DataType.Value(triton_name)


def test_encode_model_statistics() -> None:
    stats = ModelStatistics(
        name="m",
        version="3",
        last_inference_ms=1_700_000_000_001,
        inference_count=9,
        execution_count=2,
        success=StatDuration(3, 30),
        fail=StatDuration(1, 10),
        queue=StatDuration(3, 6),
        compute_input=StatDuration(3, 0),
        compute_infer=StatDuration(3, 21),
        compute_output=StatDuration(3, 0),
        batch_stats=(
            BatchStatistics(1, StatDuration(1, 0), StatDuration(1, 5), StatDuration(1, 0)),
            BatchStatistics(8, StatDuration(1, 0), StatDuration(1, 8), StatDuration(1, 0)),
        ),
    )
    (message,) = codec.encode_model_statistics([stats]).model_stats
    assert (message.name, message.version) == ("m", "3")
    assert (message.last_inference, message.inference_count, message.execution_count) == (
        1_700_000_000_001,
        9,
        2,
    )
    infer = message.inference_stats
    assert (infer.success.count, infer.success.ns, infer.fail.count, infer.fail.ns) == (
        3,
        30,
        1,
        10,
    )
    assert (infer.queue.ns, infer.compute_infer.ns, infer.cache_hit.count) == (6, 21, 0)
    assert [(b.batch_size, b.compute_infer.ns) for b in message.batch_stats] == [(1, 5), (8, 8)]


# ---- through tritonclient ---------------------------------------------------------------------
def test_get_model_config(client: Client) -> None:
    config = client.get_model_config("simple").config
    assert config.name == "simple"
    assert config.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("INPUT0", triton_config.TYPE_INT32, [16]),
        ("INPUT1", triton_config.TYPE_INT32, [16]),
    ]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.instance_group[0].kind == triton_config.ModelInstanceGroup.KIND_CPU


def test_get_model_config_as_json(client: Client) -> None:
    doc = client.get_model_config(identity_name(Datatype.BYTES), as_json=True)["config"]
    assert doc["name"] == "identity_bytes"
    assert "max_batch_size" not in doc  # 0: protobuf's JSON leaves defaults out
    assert doc["input"] == [{"name": "INPUT0", "data_type": "TYPE_STRING", "dims": ["-1", "-1"]}]
    assert "dynamic_batching" not in doc
    assert doc["parameters"] == {"served_version": {"string_value": "1"}}


def test_get_model_config_of_a_version(client: Client) -> None:
    config = client.get_model_config("simple", "2").config
    assert config.parameters["served_version"].string_value == "2"


def test_unknown_model_config_is_not_found(client: Client) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("simple", "9")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_get_inference_statistics_of_a_model(client: Client) -> None:
    (stats,) = client.get_inference_statistics("simple").model_stats
    assert (stats.name, stats.version, stats.inference_count, stats.execution_count) == (
        "simple",
        "1",
        12,
        3,
    )
    assert stats.last_inference == 1_700_000_000_123
    assert (stats.inference_stats.success.count, stats.inference_stats.fail.count) == (5, 2)
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(4, 3)]
    as_json = client.get_inference_statistics("simple", "2", as_json=True)
    assert as_json["model_stats"][0]["version"] == "2"
    assert as_json["model_stats"][0]["inference_stats"]["fail"] == {"count": "2", "ns": "700"}


def test_get_inference_statistics_of_every_model(client: Client) -> None:
    names = [s.name for s in client.get_inference_statistics().model_stats]
    assert "simple" in names and identity_name(Datatype.FP32) in names


def test_unknown_model_statistics_is_not_found(client: Client) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.get_inference_statistics("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_statistics_of_a_version_without_a_model_is_invalid(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelStatistics(pb.ModelStatisticsRequest(version="1"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_model_config_needs_a_name(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelConfig(pb.ModelConfigRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
