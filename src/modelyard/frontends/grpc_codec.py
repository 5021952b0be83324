"""Protobuf <-> ModelYard types for the OIP V2 gRPC service. Pure functions, no I/O.

Inputs arrive either as ``raw_input_contents`` (one little-endian row-major blob per input; BYTES
elements each prefixed with a 4-byte little-endian length) or as typed ``contents`` fields. Raw
blobs become numpy arrays without a copy (``np.frombuffer``; the arrays are read-only). Outputs
always go back as ``raw_output_contents``, as Triton does and as tritonclient reads them.

Every malformed request raises :class:`~modelyard.errors.InvalidInputError` naming the offending
input, output or parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InferenceError, InvalidInputError
from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.frontends.tensor_codec import (
    check_shape,
    config_datatype,
    join_bytes,
    split_bytes,
)
from modelyard.types import (
    Array,
    ConfigTensor,
    Datatype,
    InferRequest,
    InferResponse,
    ModelConfig,
    ModelMetadata,
    ModelStatistics,
    RepositoryEntry,
    StatDuration,
    TensorSpec,
)

# Typed contents field per datatype. FP16 has none: it must travel raw.
_CONTENTS_FIELD: dict[Datatype, str] = {
    Datatype.BOOL: "bool_contents",
    Datatype.UINT8: "uint_contents",
    Datatype.UINT16: "uint_contents",
    Datatype.UINT32: "uint_contents",
    Datatype.UINT64: "uint64_contents",
    Datatype.INT8: "int_contents",
    Datatype.INT16: "int_contents",
    Datatype.INT32: "int_contents",
    Datatype.INT64: "int64_contents",
    Datatype.FP32: "fp32_contents",
    Datatype.FP64: "fp64_contents",
    Datatype.BYTES: "bytes_contents",
}
# Parameters that ask for Triton features ModelYard does not have; refusing them beats silently
# reading the wrong data.
_SHARED_MEMORY_PARAMS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1

ParamMessage = pb.InferParameter | pb.ModelRepositoryParameter


# ---- requests -------------------------------------------------------------------------------
def decode_infer_request(msg: pb.ModelInferRequest, *, max_tensor_elements: int) -> InferRequest:
    """Turn a ``ModelInferRequest`` into an :class:`InferRequest` (numpy tensors).

    The ``timeout`` request parameter stays in ``parameters``; the caller makes it a deadline.
    """
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries for {len(msg.inputs)} inputs; "
            "send raw data for every input or for none"
        )
    inputs: dict[str, Array] = {}
    input_parameters: dict[str, dict[str, Any]] = {}
    for index, tensor in enumerate(msg.inputs):
        name = tensor.name
        if not name:
            raise InvalidInputError(f"inputs[{index}] has no name")
        if name in inputs:
            raise InvalidInputError(f"input {name!r} is given twice")
        blob = raw[index] if raw else None
        inputs[name] = decode_input(tensor, blob, max_tensor_elements=max_tensor_elements)
        params = decode_parameters(tensor.parameters, f"input {name!r}")
        _refuse_shared_memory(params, f"input {name!r}")
        if params:
            input_parameters[name] = params

    outputs, output_parameters = _decode_requested_outputs(msg.outputs)
    return InferRequest(
        inputs=inputs,
        id=msg.id or None,
        parameters=decode_parameters(msg.parameters, "the request"),
        outputs=outputs,
        input_parameters=input_parameters,
        output_parameters=output_parameters,
    )


def decode_input(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, *, max_tensor_elements: int
) -> Array:
    """One input tensor from its raw blob (when given) or its typed ``contents``."""
    name = tensor.name
    datatype = _datatype(tensor.datatype, f"input {name!r}")
    shape = tuple(tensor.shape)
    count = check_shape(shape, f"input {name!r}", max_tensor_elements)
    fields = tensor.contents.ListFields()
    if raw is not None:
        if fields:
            raise InvalidInputError(
                f"input {name!r} has both raw_input_contents and contents; send one"
            )
        return _from_raw(raw, datatype, shape, count, name)
    if not fields:
        if count == 0:
            return np.empty(shape, dtype=datatype.numpy_dtype)
        raise InvalidInputError(f"input {name!r} has no data (neither contents nor raw)")
    if len(fields) > 1:
        found = ", ".join(f.name for f, _ in fields)
        raise InvalidInputError(f"input {name!r}: contents sets several fields ({found})")
    field, values = fields[0]
    return _from_contents(field.name, values, datatype, shape, count, name)


def _datatype(text: str, where: str) -> Datatype:
    try:
        return Datatype(text)
    except ValueError:
        raise InvalidInputError(f"{where}: unknown datatype {text!r}") from None


def _from_raw(
    raw: bytes, datatype: Datatype, shape: tuple[int, ...], count: int, name: str
) -> Array:
    if datatype is Datatype.BYTES:
        array = split_bytes(
            raw, count, f"input {name!r}", kind="raw", size_field="raw_input_contents"
        )
        return array.reshape(shape)
    expected = count * datatype.itemsize
    if len(raw) != expected:
        raise InvalidInputError(
            f"input {name!r}: raw data has {len(raw)} bytes, but shape {list(shape)} of "
            f"{datatype.value} needs {expected}"
        )
    array = np.frombuffer(raw, dtype=datatype.numpy_dtype.newbyteorder("<"))
    if datatype is Datatype.BOOL and count and int(array.view(np.uint8).max()) > 1:
        raise InvalidInputError(f"input {name!r}: BOOL raw data must hold only bytes 0 and 1")
    return array.reshape(shape)


def _from_contents(
    field: str, values: Any, datatype: Datatype, shape: tuple[int, ...], count: int, name: str
) -> Array:
    expected = _CONTENTS_FIELD.get(datatype)
    if expected is None:
        raise InvalidInputError(
            f"input {name!r}: {datatype.value} has no typed contents; use raw_input_contents"
        )
    if field != expected:
        raise InvalidInputError(
            f"input {name!r}: {datatype.value} data goes in contents.{expected}, not {field}"
        )
    if len(values) != count:
        raise InvalidInputError(
            f"input {name!r}: contents.{field} has {len(values)} elements, "
            f"shape {list(shape)} needs {count}"
        )
    if datatype is Datatype.BYTES:
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    target = datatype.numpy_dtype
    if target.kind in "iu" and target.itemsize < 4:
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(target)
        if count and (int(wide.min()) < info.min or int(wide.max()) > info.max):
            raise InvalidInputError(
                f"input {name!r}: a value does not fit {datatype.value} [{info.min}, {info.max}]"
            )
        return wide.astype(target).reshape(shape)
    return np.asarray(values, dtype=target).reshape(shape)


def _decode_requested_outputs(
    requested: Iterable[pb.ModelInferRequest.InferRequestedOutputTensor],
) -> tuple[list[str] | None, dict[str, dict[str, Any]]]:
    names: list[str] = []
    parameters: dict[str, dict[str, Any]] = {}
    for index, out in enumerate(requested):
        if not out.name:
            raise InvalidInputError(f"outputs[{index}] has no name")
        if out.name in names:
            raise InvalidInputError(f"output {out.name!r} is requested twice")
        names.append(out.name)
        params = decode_parameters(out.parameters, f"output {out.name!r}")
        _refuse_shared_memory(params, f"output {out.name!r}")
        if params:
            parameters[out.name] = params
    return (names or None), parameters


def _refuse_shared_memory(params: Mapping[str, Any], where: str) -> None:
    if any(key in params for key in _SHARED_MEMORY_PARAMS):
        raise InvalidInputError(f"{where}: shared memory is not supported; send the data inline")


def decode_parameters(params: Mapping[str, ParamMessage], where: str) -> dict[str, Any]:
    """``map<string, InferParameter>`` (or ``ModelRepositoryParameter``) -> plain Python values."""
    out: dict[str, Any] = {}
    for key, param in params.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInputError(f"parameter {key!r} of {where} has no value")
        out[key] = getattr(param, choice)
    return out


# ---- responses ------------------------------------------------------------------------------
def encode_infer_response(response: InferResponse, request_id: str = "") -> pb.ModelInferResponse:
    """An :class:`InferResponse` as a ``ModelInferResponse`` with ``raw_output_contents``."""
    msg = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or request_id,
    )
    encode_parameters(response.parameters, msg.parameters)
    for name, output in response.outputs.items():
        array = np.asarray(output)
        datatype, blob = encode_array(name, array)
        msg.outputs.add(name=name, datatype=datatype.value, shape=array.shape)
        msg.raw_output_contents.append(blob)
    return msg


def encode_array(name: str, array: Array) -> tuple[Datatype, bytes]:
    """The V2 datatype and raw (little-endian, row-major) encoding of one output array."""
    try:
        datatype = Datatype.from_numpy(array.dtype)
    except ValueError as exc:
        raise InferenceError(f"output {name!r}: {exc}") from exc
    if datatype is Datatype.BYTES:
        return datatype, serialize_bytes(array, f"output {name!r}")
    return datatype, array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def serialize_bytes(array: Array, where: str = "a BYTES tensor") -> bytes:
    """BYTES elements, each prefixed with its length as a 4-byte little-endian integer.

    A str element that UTF-8 cannot encode (one holding a lone surrogate) raises InferenceError
    naming ``where`` and the element's (flat) index.
    """
    items: list[bytes] = []
    for index, item in enumerate(array.reshape(-1)):
        try:
            items.append(_as_bytes(item))
        except UnicodeEncodeError as exc:
            raise InferenceError(
                f"{where}: element {index} is a str that UTF-8 cannot encode ({exc.reason})"
            ) from exc
    return join_bytes(items)


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    return str(item).encode("utf-8")


def encode_parameters(values: Mapping[str, Any], target: Any) -> None:
    """Fill a protobuf ``map<string, InferParameter>`` from plain Python values.

    Values that are not scalars (lists, dicts), and integers beyond 64 bits, are sent as JSON
    text in ``string_param``. A value that has no JSON text raises InferenceError.
    """
    for key, value in values.items():
        param = target[key]
        if isinstance(value, bool | np.bool_):
            param.bool_param = bool(value)
        elif isinstance(value, int | np.integer) and _INT64_MIN <= int(value) <= _INT64_MAX:
            param.int64_param = int(value)
        elif isinstance(value, int | np.integer) and 0 <= int(value) <= _UINT64_MAX:
            param.uint64_param = int(value)
        elif isinstance(value, int | np.integer):
            param.string_param = str(value)
        elif isinstance(value, float | np.floating):
            param.double_param = float(value)
        elif isinstance(value, str):
            param.string_param = value
        else:
            try:
                text = orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
            except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits inside
                raise InferenceError(
                    f"response parameter {key!r} cannot be sent as JSON text: {exc}"
                ) from exc
            param.string_param = text.decode()


def encode_model_metadata(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=list(metadata.versions),
        platform=metadata.platform,
        inputs=[_tensor_metadata(spec) for spec in metadata.inputs],
        outputs=[_tensor_metadata(spec) for spec in metadata.outputs],
    )


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype.value, shape=list(spec.shape)
    )


def encode_repository_index(entries: Iterable[RepositoryEntry]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=e.name, version=e.version, state=e.state, reason=e.reason
            )
            for e in entries
        ]
    )


# ---- model configuration and statistics -------------------------------------------------------
def encode_model_config(config: ModelConfig) -> pb.ModelConfigResponse:
    """The configuration as Triton's ``ModelConfig`` message (the subset our proto declares)."""
    message = pb.ModelConfig(
        name=config.name,
        platform=config.platform,
        backend=config.backend,
        max_batch_size=config.max_batch_size,
        input=[pb.ModelInput(**_config_tensor(t)) for t in config.inputs],
        output=[pb.ModelOutput(**_config_tensor(t)) for t in config.outputs],
        instance_group=[
            pb.ModelInstanceGroup(
                name=config.name,
                kind=pb.ModelInstanceGroup.KIND_CPU,
                count=config.instance_count,
            )
        ],
    )
    if config.max_queue_delay_us is not None:
        message.dynamic_batching.max_queue_delay_microseconds = config.max_queue_delay_us
    for key, value in config.parameters.items():
        message.parameters[key].string_value = value
    return pb.ModelConfigResponse(config=message)


def _config_tensor(tensor: ConfigTensor) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": tensor.name,
        "data_type": pb.DataType.Value(config_datatype(tensor.datatype)),
        "dims": list(tensor.dims),
    }
    if tensor.reshape is not None:
        fields["reshape"] = pb.ModelTensorReshape(shape=list(tensor.reshape))
    return fields


def encode_model_statistics(stats: Iterable[ModelStatistics]) -> pb.ModelStatisticsResponse:
    return pb.ModelStatisticsResponse(model_stats=[_model_stats(s) for s in stats])


def _model_stats(stats: ModelStatistics) -> pb.ModelStatistics:
    return pb.ModelStatistics(
        name=stats.name,
        version=stats.version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
            cache_hit=_duration(stats.cache_hit),
            cache_miss=_duration(stats.cache_miss),
        ),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=b.batch_size,
                compute_input=_duration(b.compute_input),
                compute_infer=_duration(b.compute_infer),
                compute_output=_duration(b.compute_output),
            )
            for b in stats.batch_stats
        ],
    )


def _duration(value: StatDuration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=value.count, ns=value.ns)
