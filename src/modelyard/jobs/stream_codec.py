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

from modelyard.errors import ErrorCode, InvalidInputError, ModelYardError, UnavailableError
from modelyard.jobs.sources import Message
from modelyard.types import Array, InferRequest, InferResponse, Signature

__all__ = [
    "code_of",
    "dead_letter_body",
    "decode_message",
    "encode_result",
    "is_transient",
    "parse_message",
    "request_of",
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


def is_transient(error: BaseException) -> bool:
    """Errors that say "not now" (retry), as opposed to "never" (dead letter)."""
    return isinstance(error, UnavailableError)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
