"""The helper-process wire format of shadows: frames, tensor packing, the compared output."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.traffic.shadow import ShadowJob
from modelyard.traffic.shadow_process import (
    FrameBuffer,
    JobMessage,
    compared_output,
    frame,
    pack,
    unpack,
)
from modelyard.traffic.spec import Shadow
from modelyard.types import InferRequest, InferResponse, RequestContext


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    data = b"".join(frame(m) for m in ([1, 2], ("a", None), {"k": b"v" * 1000}))
    for step in (1, 3, 7, len(data)):
        buf = FrameBuffer()
        out = []
        for i in range(0, len(data), step):
            out += buf.feed(data[i : i + step])
        assert out == [[1, 2], ("a", None), {"k": b"v" * 1000}]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.asarray([[1, -2]], dtype=np.int64),
        np.asarray([True, False]),
        np.zeros((0, 4), dtype=np.float16),
        np.asarray([[b"ab"], [b""]], dtype=object),
    ],
)
def test_pack_round_trips_dtype_shape_and_values(array: np.ndarray) -> None:
    back = unpack(pack({"t": array}))["t"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)


def test_a_job_survives_the_wire_as_a_plain_tuple() -> None:
    x = np.asarray([[0.5, 1.5]], dtype=np.float32)
    message = JobMessage(
        job_id=7,
        model="m",
        ref="candidate",
        inputs=pack({"x": x}),
        parameters={"p": 1},
        outputs=["y"],
        compare=("y", "argmax", 1e-6, 0.0),
        primary=pack({"y": x}),
        timeout_s=None,
        request_id="r-shadow",
        endpoint="ep",
    )
    (wire,) = FrameBuffer().feed(frame(tuple(message)))
    back = JobMessage._make(wire)
    request = back.infer_request()
    assert np.array_equal(request.inputs["x"], x) and request.outputs == ["y"]
    assert back.compare_spec().kind == "argmax" and back.compare_spec().output == "y"
    primary = back.primary_outputs()
    assert primary is not None and np.array_equal(primary["y"], x)


def _job(compare: dict[str, object], outputs: dict[str, np.ndarray] | None) -> ShadowJob:
    return ShadowJob(
        endpoint="ep",
        shadow=Shadow.model_validate({"model": "m", "compare": compare}),
        version=0,
        request=InferRequest(inputs={}),
        primary=None if outputs is None else InferResponse("m", "1", outputs),
        primary_s=0.001,
        ctx=RequestContext(),
    )


@pytest.mark.parametrize(
    ("compare", "outputs", "sent"),
    [
        ({}, {"a": np.ones(1), "b": np.zeros(1)}, ["a"]),  # default: the first output
        ({"output": "b"}, {"a": np.ones(1), "b": np.zeros(1)}, ["b"]),
        ({"output": "c"}, {"a": np.ones(1)}, []),  # missing: the helper counts a disagreement
        ({}, None, None),  # the primary failed
    ],
)
def test_only_the_compared_output_is_sent(
    compare: dict[str, object], outputs: dict[str, np.ndarray] | None, sent: list[str] | None
) -> None:
    found = compared_output(_job(compare, outputs))
    assert (None if found is None else sorted(found)) == sent
