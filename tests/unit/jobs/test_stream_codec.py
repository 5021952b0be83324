"""Stream message format, broker URLs and the brokers' pure bookkeeping."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelyard.errors import InvalidInputError
from modelyard.jobs.sources import Message, dead_letter_url, parse_broker_url
from modelyard.jobs.sources.kafka import _Partition
from modelyard.jobs.sources.nats import subject_matches
from modelyard.jobs.stream_codec import decode_message, encode_result
from modelyard.types import InferResponse
from tests.unit.jobs.streamkit import SIGNATURE


def msg(doc: object) -> Message:
    return Message(orjson.dumps(doc), "s/1-0")


def test_rows_without_the_batch_axis_get_one_and_ids_are_kept() -> None:
    msg_id, request = decode_message(msg({"id": 42, "inputs": {"x": [1, 2]}}), SIGNATURE)
    assert msg_id == 42 and request.id == "42"
    assert request.inputs["x"].dtype == np.float32 and request.inputs["x"].shape == (1, 2)


def test_a_message_without_id_is_named_by_its_position() -> None:
    msg_id, _ = decode_message(msg({"inputs": {"x": [[1, 2], [3, 4]]}}), SIGNATURE)
    assert msg_id == "s/1-0"


def test_v2_bodies_with_requested_outputs() -> None:
    doc = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}],
        "outputs": [{"name": "y"}],
    }
    _, request = decode_message(msg(doc), SIGNATURE)
    assert request.outputs == ["y"] and request.inputs["x"].tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\xff", "not JSON"),
        (b"[1]", "expected"),
        (orjson.dumps({"inputs": 3}), "'inputs' must be"),
        (orjson.dumps({"inputs": {"x": [1, 2]}, "outputs": 5}), "'outputs' must be"),
        (orjson.dumps({"inputs": {"z": [1]}}), "unexpected input 'z'"),
    ],
)
def test_malformed_messages_are_invalid_input(body: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        decode_message(Message(body, "s/1"), SIGNATURE)


def test_results_carry_model_version_and_json_outputs() -> None:
    outputs = {
        "y": np.array([[1.5, 2.0]], dtype=np.float32),
        "label": np.array([b"cat"], dtype=object),
        "flag": np.array([True]),
    }
    doc = orjson.loads(encode_result("a", InferResponse("m", "7", outputs)))
    assert doc == {
        "id": "a",
        "model": "m",
        "version": 7,
        "outputs": {"y": [[1.5, 2.0]], "label": ["cat"], "flag": [True]},
    }


def test_broker_urls() -> None:
    url = parse_broker_url("redis://h:1,h:2/0?stream=s&field=f")
    assert url.hosts == ("h:1", "h:2") and url.path == "/0" and url.param("field") == "f"
    assert url.required("stream") == "s"
    with pytest.raises(InvalidInputError, match=r"needs \?topic="):
        parse_broker_url("kafka://h:9092").required("topic")
    with pytest.raises(InvalidInputError, match="unknown scheme"):
        parse_broker_url("amqp://h/")
    with pytest.raises(InvalidInputError, match="no host"):
        parse_broker_url("redis:///0?stream=s")
    with pytest.raises(InvalidInputError, match="ack_wait"):
        parse_broker_url("nats://h?ack_wait=soon").number("ack_wait", 1.0)


def test_default_dead_letter_destinations() -> None:
    assert dead_letter_url("redis://h:1/0?stream=s") == "redis://h:1/0?stream=s.dead-letter"
    assert dead_letter_url("kafka://h:1?topic=t&partitions=3") == (
        "kafka://h:1?topic=t.dead-letter&partitions=3"
    )
    assert dead_letter_url("nats://h:1?subject=a.b&stream=X") == (
        "nats://h:1?subject=a.b.dead-letter&stream=X-dead-letter"
    )


@pytest.mark.parametrize(
    ("pattern", "subject", "hit"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.b", "a.c", False),
    ],
)
def test_nats_subject_matching(pattern: str, subject: str, hit: bool) -> None:
    assert subject_matches(pattern, subject) is hit


def test_kafka_commits_only_the_finished_prefix() -> None:
    part = _Partition()
    part.outstanding.extend([10, 11, 12, 13])
    part.done.update({11, 12})
    assert part.advance() is None  # 10 is still in flight
    part.done.add(10)
    assert part.advance() == 13 and list(part.outstanding) == [13]
    part.done.add(13)
    assert part.advance() == 14 and part.committed == 14


def test_only_row_wise_models_are_merged_and_split_checks_rows() -> None:
    from modelyard.jobs.stream_codec import can_merge, merge_key, merge_requests, split_response
    from modelyard.types import Datatype, InferRequest, Signature, TensorSpec

    assert can_merge(SIGNATURE)
    fixed = TensorSpec(name="x", datatype=Datatype.FP32, shape=(3,))
    assert not can_merge(Signature(inputs=(fixed,), outputs=SIGNATURE.outputs))
    one = InferRequest(inputs={"x": np.ones((1, 2), np.float32)}, id="a")
    two = InferRequest(inputs={"x": np.zeros((2, 2), np.float32)}, id="b")
    wide = InferRequest(inputs={"x": np.zeros((1, 3), np.float32)}, id="c")
    assert merge_key(one) == merge_key(two) != merge_key(wide)
    merged = merge_requests([one, two])
    assert merged.inputs["x"].shape == (3, 2)
    parts = split_response(InferResponse("m", "1", {"y": merged.inputs["x"] * 2}), [one, two])
    assert [p.id for p in parts] == ["a", "b"] and parts[1].outputs["y"].shape == (2, 2)
    with pytest.raises(ValueError, match="no row per input row"):
        split_response(InferResponse("m", "1", {"y": np.zeros(1)}), [one, two])
