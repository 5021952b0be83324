"""BYTES inputs as the runtime wants them: str decoded from UTF-8 bytes, bytes encoded from str;
an element that is neither valid UTF-8 nor valid Unicode is named, not a crash."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.core.validation import validate_inputs
from modelyard.errors import InvalidInputError
from modelyard.types import Datatype, Signature, TensorSpec

SIGNATURE = Signature(inputs=(TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,)),))


def elements(*values: object) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@pytest.mark.parametrize(
    ("values", "decode", "expected"),
    [
        ((b"caf\xc3\xa9", "x"), True, ["café", "x"]),
        ((b"caf\xc3\xa9", "x"), False, [b"caf\xc3\xa9", b"x"]),
    ],
)
def test_elements_become_what_the_runtime_takes(
    values: tuple[object, ...], decode: bool, expected: list[object]
) -> None:
    out = validate_inputs(SIGNATURE, {"text": elements(*values)}, decode_bytes=decode)
    assert out["text"].tolist() == expected


@pytest.mark.parametrize(
    ("value", "decode", "message"),
    [
        (b"\xff", True, "input 'text' element 1 is not valid UTF-8 text"),
        ("\ud800", False, "input 'text' element 1 is not valid Unicode text (a lone surrogate)"),
        (3, True, "input 'text' element 1 is not a string or bytes"),
    ],
)
def test_bad_elements_are_named(value: object, decode: bool, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_inputs(SIGNATURE, {"text": elements(b"ok", value)}, decode_bytes=decode)
    assert info.value.message == message
