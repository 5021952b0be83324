"""The stream message format: a message in, a result or a dead letter out.

In: ``{"id": ..., "inputs": {name: nested list}}`` (rows as ``modelyard predict --input`` takes
them, a missing batch axis added) or an Open Inference Protocol V2 request body ``{"id": ...,
"inputs": [{"name", "shape", "datatype", "data"}], "outputs": [{"name": ...}]}``.

Out: ``{"id": ..., "model": ..., "version": ..., "outputs": {name: nested list}}``, or to the
dead-letter sink ``{"id": ..., "source": broker position, "code": ..., "error": ..., "body":
the original message as text}``. A message without ``id`` gets its broker position as id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelyard.errors import ErrorCode, InvalidInputError, ModelYardError
from modelyard.jobs.sources import Message
from modelyard.types import Array, InferRequest, InferResponse, Signature

__all__ = [
    "can_merge",
    "code_of",
    "dead_letter_body",
    "decode_message",
    "encode_result",
    "is_transient",
    "merge_key",
    "merge_requests",
    "parse_message",
    "request_of",
    "split_response",
]


def parse_message(message: Message) -> tuple[Any, dict[str, Any]]:
    """(the message's id, its JSON object). Raises InvalidInputError when it is not one."""
    try:
        doc = orjson.loads(message.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"message {message.ref} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError(f'message {message.ref}: expected {{"id": ..., "inputs": ...}}')
    return doc.get("id", message.ref), doc


def request_of(msg_id: Any, doc: dict[str, Any], signature: Signature) -> InferRequest:
    """The inference request a parsed message asks for (InvalidInputError when malformed)."""
    from modelyard.cli_predict import parse_inputs

    inputs = doc.get("inputs")
    if isinstance(inputs, list):
        arrays = parse_inputs({"inputs": inputs}, signature)
    elif isinstance(inputs, dict):
        arrays = parse_inputs(inputs, signature)
    else:
        raise InvalidInputError(f"message {msg_id}: 'inputs' must be an object or a list")
    return InferRequest(inputs=arrays, id=str(msg_id), outputs=_wanted(doc.get("outputs")))


def decode_message(message: Message, signature: Signature) -> tuple[Any, InferRequest]:
    """(the message's id, its request). Raises InvalidInputError for a malformed message."""
    msg_id, doc = parse_message(message)
    return msg_id, request_of(msg_id, doc, signature)


def _wanted(outputs: object) -> list[str] | None:
    if outputs is None:
        return None
    if isinstance(outputs, list):
        names = [o.get("name") if isinstance(o, dict) else o for o in outputs]
        if all(isinstance(n, str) for n in names):
            return [str(n) for n in names]
    raise InvalidInputError("'outputs' must be a list of output names or of {\"name\": ...}")


def encode_result(msg_id: Any, response: InferResponse) -> bytes:
    version: int | str = response.model_version
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    doc = {
        "id": msg_id,
        "model": response.model_name,
        "version": version,
        "outputs": {name: _jsonable(array) for name, array in response.outputs.items()},
    }
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _jsonable(array: Array) -> Any:
    if array.dtype.kind in "OSU":
        flat = [_text(v) for v in array.flat]
        return np.asarray(flat, dtype=object).reshape(array.shape).tolist()
    if array.dtype.kind in "biuf" and array.dtype.isnative and array.dtype.itemsize >= 2:
        return np.ascontiguousarray(array)  # orjson writes numeric arrays natively
    return array.tolist()


def code_of(error: BaseException) -> str:
    return error.code.value if isinstance(error, ModelYardError) else ErrorCode.INTERNAL.value


def dead_letter_body(message: Message, msg_id: Any, error: BaseException) -> bytes:
    """The dead letter of ``message``: its id, broker position, error code and text, and the
    original body (as text)."""
    code = code_of(error)
    if isinstance(error, ModelYardError):
        text = error.message
    else:
        text = f"{type(error).__name__}: {error}"
    doc = {
        "id": msg_id,
        "source": message.ref,
        "code": code,
        "error": text,
        "body": message.body.decode("utf-8", "replace"),
    }
    return orjson.dumps(doc)


#: Errors a message itself causes (dead-lettered): bad input, and a model failing on it.
_MESSAGE_FAULTS = frozenset({ErrorCode.INVALID_ARGUMENT, ErrorCode.INTERNAL})


def is_transient(error: BaseException) -> bool:
    """Errors that say "not now" (retried until they pass), as opposed to "never" (dead letter).

    Only what the message causes is "never": invalid input, or the model failing on it. The
    rest is the deployment's state and says nothing about the message: a model that cannot be
    loaded (UNAVAILABLE), a version whose artifact fails its checksum or needs an opt-in
    (FAILED_PRECONDITION, PERMISSION_DENIED), an alias or model that is gone (NOT_FOUND), a
    model over the cache budget (RESOURCE_EXHAUSTED), a timeout. Dead-lettering those would
    empty the stream into the dead-letter sink while the deployment is broken; retried, the
    messages are scored once it is fixed (an alias moved back)."""
    if not isinstance(error, ModelYardError) or isinstance(error, InvalidInputError):
        return False  # an unexpected exception of the model's (like INTERNAL), or bad input
    return error.code not in _MESSAGE_FAULTS


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ---- merging the requests of one fetch ---------------------------------------------------------
def can_merge(signature: Signature) -> bool:
    """Rows of a request are independent: every input and output has a variable batch axis."""
    specs = (*signature.inputs, *signature.outputs)
    return bool(specs) and all(s.shape and s.shape[0] == -1 for s in specs)


def merge_key(request: InferRequest) -> Any:
    """Requests with equal keys can be concatenated along the batch axis."""
    if request.parameters or any(a.ndim == 0 for a in request.inputs.values()):
        return id(request)  # nothing to merge it with
    form = tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in request.inputs.items()))
    return form, None if request.outputs is None else tuple(request.outputs)


def merge_requests(requests: list[InferRequest]) -> InferRequest:
    first = requests[0]
    inputs = {name: np.concatenate([r.inputs[name] for r in requests]) for name in first.inputs}
    return InferRequest(inputs=inputs, outputs=first.outputs)


def split_response(response: InferResponse, requests: list[InferRequest]) -> list[InferResponse]:
    """The merged ``response`` cut back into one response per request (ValueError when an
    output does not have one row per input row)."""
    rows = [next(iter(r.inputs.values())).shape[0] for r in requests]
    total = sum(rows)
    for name, array in response.outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ValueError(f"output '{name}' has no row per input row")
    out: list[InferResponse] = []
    start = 0
    for request, n in zip(requests, rows, strict=True):
        outputs = {k: v[start : start + n] for k, v in response.outputs.items()}
        params = dict(response.parameters)
        out.append(
            InferResponse(response.model_name, response.model_version, outputs, request.id, params)
        )
        start += n
    return out
