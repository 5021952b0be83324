"""The model configuration derived from a manifest: a table of batched and unbatched versions."""

from __future__ import annotations

import pytest

from modelyard.core.batch_policy import batching_enabled
from modelyard.core.model_config import config_tensors, derive_model_config
from modelyard.frontends.tensor_codec import config_datatype
from modelyard.manifest import BatchingHints, Manifest
from modelyard.types import ConfigTensor, Datatype, Signature, TensorSpec


def spec(name: str, shape: tuple[int, ...], datatype: Datatype = Datatype.FP32) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=shape)


def manifest(
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...] = (),
    *,
    max_batch_size: int = 1,
    max_wait_us: int = 0,
    runtime: str = "onnx",
) -> Manifest:
    return Manifest(
        runtime=runtime,
        signature=Signature(inputs=inputs, outputs=outputs),
        batching=BatchingHints(max_batch_size=max_batch_size, max_wait_us=max_wait_us),
    )


@pytest.mark.parametrize(
    ("max_batch_size", "shapes", "enabled"),
    [
        (1, [(-1, 4)], False),  # the default hint: no batching
        (8, [(-1, 4)], True),
        (8, [(-1, 4), (-1,)], True),
        (8, [(-1, 4), (3, 4)], False),  # one input without a row dimension
        (8, [()], False),  # a scalar input
        (2, [(-1, -1)], True),
        (8, [], True),  # no inputs: nothing forbids it
    ],
)
def test_batching_enabled(
    max_batch_size: int, shapes: list[tuple[int, ...]], enabled: bool
) -> None:
    assert batching_enabled(max_batch_size, shapes) is enabled


@pytest.mark.parametrize(
    ("shape", "batched", "dims", "reshape"),
    [
        ((-1, 4), True, (4,), None),
        ((-1, 4), False, (-1, 4), None),
        ((-1, -1, 3), True, (-1, 3), None),
        ((-1,), True, (1,), ()),  # one value per row: Triton's dims [1] + reshape []
        ((), False, (1,), ()),  # a scalar
        ((-1,), False, (-1,), None),
        ((2, 3), False, (2, 3), None),
    ],
)
def test_dims_with_and_without_the_batch_dimension(
    shape: tuple[int, ...], batched: bool, dims: tuple[int, ...], reshape: tuple[int, ...] | None
) -> None:
    (tensor,) = config_tensors([spec("x", shape)], batched=batched)
    assert tensor == ConfigTensor("x", Datatype.FP32, dims, reshape)


def test_batched_version() -> None:
    m = manifest(
        (spec("input", (-1, 4)),),
        (spec("label", (-1,), Datatype.INT64), spec("probabilities", (-1, 3))),
        max_batch_size=32,
        max_wait_us=500,
    )
    config = derive_model_config("iris", "2", m, instance_count=4)
    assert config.name == "iris" and config.version == "2"
    assert (config.platform, config.backend) == ("onnx", "onnx")
    assert config.max_batch_size == 32
    assert config.max_queue_delay_us == 500
    assert config.inputs == (ConfigTensor("input", Datatype.FP32, (4,)),)
    assert config.outputs == (
        ConfigTensor("label", Datatype.INT64, (1,), ()),
        ConfigTensor("probabilities", Datatype.FP32, (3,)),
    )
    assert config.instance_count == 4
    assert config.parameters == {"served_version": "2"}


@pytest.mark.parametrize(
    ("max_batch_size", "input_shape"),
    [
        (1, (-1, 4)),  # batching off in the hints
        (16, (5, 4)),  # hints ask for it, but the input has no row dimension
    ],
)
def test_unbatched_version_has_full_shapes_and_no_batcher(
    max_batch_size: int, input_shape: tuple[int, ...]
) -> None:
    m = manifest(
        (spec("x", input_shape),),
        (spec("y", (-1,)),),
        max_batch_size=max_batch_size,
        max_wait_us=900,
        runtime="sklearn",
    )
    config = derive_model_config("m", "7", m, instance_count=2, parameters={"endpoint": "e"})
    assert config.max_batch_size == 0
    assert config.max_queue_delay_us is None
    assert config.inputs == (ConfigTensor("x", Datatype.FP32, input_shape),)
    assert config.outputs == (ConfigTensor("y", Datatype.FP32, (-1,)),)
    assert config.platform == "sklearn"
    assert config.parameters == {"served_version": "7", "endpoint": "e"}


@pytest.mark.parametrize("datatype", list(Datatype))
def test_every_datatype_keeps_its_type_and_has_a_triton_name(datatype: Datatype) -> None:
    m = manifest((spec("x", (-1, 2), datatype),), (spec("y", (-1, 2), datatype),))
    config = derive_model_config("m", "1", m, instance_count=1)
    assert config.inputs[0].datatype is datatype
    assert config.outputs[0].datatype is datatype
    expected = "TYPE_STRING" if datatype is Datatype.BYTES else f"TYPE_{datatype.value}"
    assert config_datatype(datatype) == expected


def test_triton_names_are_distinct_and_match_the_enum() -> None:
    from tritonclient.grpc import model_config_pb2

    names = [config_datatype(d) for d in Datatype]
    assert len(set(names)) == len(names)
    for name in names:
        model_config_pb2.DataType.Value(name)  # raises ValueError for a name Triton lacks
