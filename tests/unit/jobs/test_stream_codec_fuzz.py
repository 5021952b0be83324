"""Property test: whatever a producer puts on a stream, decoding gives a request or an
InvalidInputError (the message goes to the dead-letter sink with its reason), never another
exception, which would fail the whole fetch and have the broker deliver the poison message again
and again."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidInputError
from modelyard.jobs.sources import Message
from modelyard.jobs.stream_codec import dead_letter_body, decode_message
from modelyard.types import Datatype, Signature, TensorSpec
from tests.unit.frontends.test_codec_fuzz import json_values, scalars


def spec(name: str, datatype: Datatype, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=shape)


SIGNATURES = [
    Signature(inputs=(spec("input", Datatype.FP32, (-1, 4)),), outputs=()),
    Signature(inputs=(spec("text", Datatype.BYTES, (-1,)),), outputs=()),
    Signature(
        inputs=(spec("a", Datatype.INT64, (-1, 2)), spec("b", Datatype.BOOL, (-1,))), outputs=()
    ),
]
NAMES = st.sampled_from(["input", "text", "a", "b", "zz"])
ROWS = st.lists(st.one_of(scalars, st.lists(scalars, max_size=5)), max_size=4)
# Both message forms: {name: rows} and a V2 request's inputs list.
ROW_INPUTS = st.dictionaries(NAMES, st.one_of(ROWS, scalars, json_values), max_size=3)
V2_INPUTS = st.lists(
    st.fixed_dictionaries(
        {"name": NAMES},
        optional={
            "shape": st.lists(st.integers(-1, 5), max_size=3) | json_values,
            "datatype": st.sampled_from(["FP32", "BYTES", "INT64", "BOOL", "x"]),
            "data": ROWS | json_values,
        },
    ),
    max_size=3,
)
DOCS = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "inputs": st.one_of(ROW_INPUTS, V2_INPUTS, json_values),
        "outputs": json_values,
    },
)


@settings(max_examples=1000, deadline=None, derandomize=True, database=None)
@given(doc=st.one_of(DOCS, json_values), signature=st.sampled_from(SIGNATURES))
def test_any_message_decodes_or_is_a_dead_letter(doc: Any, signature: Signature) -> None:
    message = Message(json.dumps(doc).encode(), "partition-0@17")
    try:
        decode_message(message, signature)
    except InvalidInputError as exc:
        letter = json.loads(dead_letter_body(message, "id", exc))
        assert letter["code"] == "INVALID_ARGUMENT" and letter["error"]
        assert letter["body"] == message.body.decode()


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(body=st.binary(max_size=64))
def test_any_bytes_decode_or_are_a_dead_letter(body: bytes) -> None:
    message = Message(body, "partition-0@18")
    try:
        decode_message(message, SIGNATURES[0])
    except InvalidInputError as exc:
        assert json.loads(dead_letter_body(message, message.ref, exc))["source"] == message.ref
