"""What a stream is scored with, and how one fetched batch of messages becomes outcomes.

:class:`StreamModel` is the consumer's view of a model (its signature and the dataplane call);
:func:`score_messages` turns messages into one ``(id, response or error)`` each, merging the
requests of one form into one dataplane call when the model is row-wise. Delivery (retries,
writes, acknowledgements) is the consumer's, in :mod:`modelyard.jobs.stream`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.jobs.sources import Message
from modelyard.jobs.stream_codec import (
    can_merge,
    is_transient,
    merge_key,
    merge_requests,
    parse_message,
    request_of,
    split_response,
)
from modelyard.types import InferRequest, InferResponse, RequestContext, Signature

if TYPE_CHECKING:
    from modelyard.core.serving import ServingDataPlane

Outcome = InferResponse | BaseException


class StreamModel(Protocol):
    """The model a stream is scored with: its current signature and the dataplane call."""

    async def signature(self) -> Signature: ...

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse: ...


class ServingModel:
    """``name`` / ``name@alias`` / ``name:version`` served by a :class:`ServingDataPlane`.
    An alias is re-resolved like a server does it, so moving it moves the stream."""

    def __init__(self, serving: ServingDataPlane, name: str, ref: str | None) -> None:
        self.serving = serving
        self.name = name
        self.ref = ref

    async def signature(self) -> Signature:
        return (await self.serving.resolver.resolve(self.name, self.ref)).manifest.signature

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse:
        return await self.serving.infer(self.name, self.ref, request, ctx)


async def score_messages(
    model: StreamModel, messages: list[Message], signature: Signature, *, merge: bool
) -> list[tuple[Any, Outcome]]:
    """Each message's (id, response or error). With ``merge``, requests of one form (same
    inputs, shapes past the batch axis and outputs) are merged into one dataplane call when the
    model is row-wise (:func:`can_merge`); a merged call that fails is retried message by
    message, so one poison message costs the others nothing but a second call."""
    ids: list[Any] = []
    outcomes: list[Outcome | None] = []
    requests: dict[int, InferRequest] = {}
    groups: dict[Any, list[int]] = {}
    merge = merge and can_merge(signature)
    for i, message in enumerate(messages):
        msg_id, item = _decode(message, signature)
        ids.append(msg_id)
        if isinstance(item, InferRequest):
            outcomes.append(None)
            requests[i] = item
            groups.setdefault(merge_key(item) if merge else i, []).append(i)
        else:
            outcomes.append(item)
    answers = await asyncio.gather(
        *(_infer_group(model, [requests[i] for i in idx]) for idx in groups.values())
    )
    for idx, answer in zip(groups.values(), answers, strict=True):
        for i, outcome in zip(idx, answer, strict=True):
            outcomes[i] = outcome
    return [(msg_id, o) for msg_id, o in zip(ids, outcomes, strict=True) if o is not None]


def _decode(message: Message, signature: Signature) -> tuple[Any, InferRequest | BaseException]:
    msg_id: Any = message.ref
    try:
        msg_id, doc = parse_message(message)
        return msg_id, request_of(msg_id, doc, signature)
    except Exception as exc:
        return msg_id, exc


async def _infer_group(model: StreamModel, requests: list[InferRequest]) -> list[Outcome]:
    if len(requests) > 1:
        try:
            merged = await model.infer(merge_requests(requests), RequestContext())
            return list(split_response(merged, requests))
        except Exception as exc:
            if is_transient(exc):
                return [exc] * len(requests)
    return list(await asyncio.gather(*(_infer_one(model, r) for r in requests)))


async def _infer_one(model: StreamModel, request: InferRequest) -> Outcome:
    try:
        return await model.infer(request, RequestContext())
    except Exception as exc:
        return exc
