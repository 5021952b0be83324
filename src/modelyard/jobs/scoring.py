"""Where an offline job's rows are scored: in this process, or by a remote ModelYard server.

Both take one pinned version (the job's manifest records it) and expose the same small
interface, :class:`Scorer`: the signature, the feature names recorded with the version, and
``submit(inputs) -> Future[outputs]`` so a job can keep several batches in flight.

* :class:`LocalScorer` goes through :class:`~modelyard.embedded.Predictor`, i.e. the serving
  core of a server process (registry, model cache, signature checks, batcher).
* :class:`RemoteScorer` posts Open Inference Protocol V2 requests with the binary tensor data
  extension (no JSON number formatting) to ``--url``, and retries what a server says is
  temporary (503, connection errors) with backoff.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from modelyard.errors import (
    InferenceError,
    InvalidInputError,
    ModelNotFoundError,
    ModelYardError,
    UnavailableError,
)
from modelyard.jobs.columns import feature_names_of
from modelyard.settings import Settings
from modelyard.types import Array, Datatype, Signature, TensorSpec


class Scorer(Protocol):
    """One pinned model version that scores batches of named tensors."""

    model: str
    version: int
    signature: Signature
    feature_names: dict[str, list[str]]

    def submit(
        self, inputs: dict[str, Array], outputs: Sequence[str] | None = None
    ) -> concurrent.futures.Future[dict[str, Array]]: ...

    def close(self) -> None: ...


class LocalScorer:
    """Scores in this process through the embedded predictor, pinned to the version that
    ``ref`` names when the scorer is created."""

    def __init__(self, settings: Settings, name: str, ref: str | int | None) -> None:
        from modelyard.embedded import Predictor
        from modelyard.registry.registry import Registry

        with Registry.from_settings(settings) as registry:
            mv = registry.resolve(name, ref)
        self.model = mv.model
        self.version = mv.version
        self.signature = mv.manifest.signature
        self.feature_names = feature_names_of(
            mv.metadata, mv.manifest.runtime_options, self.signature
        )
        self._predictor = Predictor(settings, name, str(mv.version))

    def submit(
        self, inputs: dict[str, Array], outputs: Sequence[str] | None = None
    ) -> concurrent.futures.Future[dict[str, Array]]:
        return self._predictor.submit(inputs, outputs=outputs)

    def close(self) -> None:
        self._predictor.close()


class RemoteScorer:
    """Scores through a ModelYard (or any OIP V2) server at ``url``, pinned to the version that
    the server resolves ``ref`` to when the scorer is created."""

    def __init__(
        self,
        url: str,
        name: str,
        ref: str | int | None,
        *,
        concurrency: int = 2,
        timeout_s: float = 300.0,
        retries: int = 5,
        backoff_s: float = 0.2,
        transport: Any = None,
    ) -> None:
        import httpx

        self._url = url.rstrip("/")
        # ``transport``: an httpx transport, for tests that answer without a socket.
        self._client = httpx.Client(base_url=self._url, timeout=timeout_s, transport=transport)
        self._retries = retries
        self._backoff = backoff_s
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(concurrency, 1), thread_name_prefix="modelyard-remote"
        )
        try:
            meta = self._metadata(name, ref)
        except BaseException:
            self.close()
            raise
        self.model = name
        params = meta.get("parameters") or {}
        served = params.get("served_version") or (meta.get("versions") or [None])[-1]
        if served is None or not str(served).isdigit():
            self.close()
            raise InvalidInputError(f"{url}: model '{name}' metadata names no served version")
        self.version = int(served)
        self.signature = Signature(
            inputs=tuple(_spec(doc) for doc in meta.get("inputs", [])),
            outputs=tuple(_spec(doc) for doc in meta.get("outputs", [])),
        )
        self.feature_names = feature_names_of(params, {}, self.signature)

    def _metadata(self, name: str, ref: str | int | None) -> dict[str, Any]:
        path = f"/v2/models/{name}" + ("" if ref is None else f"/versions/{ref}")
        response = self._request("GET", path)
        doc = orjson.loads(response.content)
        if not isinstance(doc, dict):
            raise InvalidInputError(f"{self._url}{path}: metadata is not a JSON object")
        return doc

    def submit(
        self, inputs: dict[str, Array], outputs: Sequence[str] | None = None
    ) -> concurrent.futures.Future[dict[str, Array]]:
        return self._pool.submit(self._infer, inputs, outputs)

    def _infer(
        self, inputs: Mapping[str, Array], outputs: Sequence[str] | None
    ) -> dict[str, Array]:
        from modelyard.frontends.tensor_codec import raw_from_array

        docs: list[dict[str, Any]] = []
        chunks: list[bytes | memoryview] = []
        for name, array in inputs.items():
            datatype = Datatype.from_numpy(array.dtype)
            raw = raw_from_array(array, datatype)
            chunks.append(raw)
            docs.append(
                {
                    "name": name,
                    "datatype": datatype.value,
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
        header: dict[str, Any] = {"inputs": docs, "parameters": {"binary_data_output": True}}
        if outputs is not None:
            header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
        head = orjson.dumps(header)
        body = b"".join([head, *chunks])
        response = self._request(
            "POST",
            f"/v2/models/{self.model}/versions/{self.version}/infer",
            content=body,
            headers={
                "Inference-Header-Content-Length": str(len(head)),
                "Content-Type": "application/octet-stream",
            },
        )
        return _decode_response(response.content, response.headers)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                error: ModelYardError = UnavailableError(f"{self._url}{path}: {exc}")
            else:
                if response.status_code < 400:
                    return response
                error = _error_of(response, f"{self._url}{path}")
            if not isinstance(error, UnavailableError) or attempt == self._retries:
                raise error
            # A busy or restarting server: back off instead of failing the whole job.
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


def _spec(doc: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(
        name=str(doc["name"]), datatype=Datatype(doc["datatype"]), shape=tuple(doc["shape"])
    )


def _error_of(response: Any, where: str) -> ModelYardError:
    try:
        message = str(orjson.loads(response.content).get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        message = response.text[:200]
    text = f"{where}: HTTP {response.status_code}: {message}"
    status = response.status_code
    if status == 404:
        return ModelNotFoundError(text)
    if status in (429, 502, 503, 504):
        return UnavailableError(text)
    if 400 <= status < 500:
        return InvalidInputError(text)
    return InferenceError(text)


def _decode_response(body: bytes, headers: Mapping[str, str]) -> dict[str, Array]:
    from modelyard.frontends.tensor_codec import array_from_json, array_from_raw

    length_text = headers.get("inference-header-content-length")
    length = int(length_text) if length_text else len(body)
    doc = orjson.loads(body[:length])
    view = memoryview(body)
    offset = length
    out: dict[str, Array] = {}
    for entry in doc.get("outputs", []):
        name = str(entry["name"])
        datatype = Datatype(entry["datatype"])
        shape = tuple(int(d) for d in entry["shape"])
        size = (entry.get("parameters") or {}).get("binary_data_size")
        where = f"output '{name}'"
        if size is not None:
            out[name] = array_from_raw(view[offset : offset + size], datatype, shape, where)
            offset += int(size)
        else:
            out[name] = array_from_json(entry["data"], datatype, shape, where)
    return out


# ---- one predictor per worker process (Spark executors, Ray actors) ---------------------------
_SHARED: dict[tuple[str, str, int], Any] = {}
_SHARED_LOCK = threading.Lock()


def shared_predictor(settings: Settings, model: str, version: int) -> Any:
    """The process-wide :class:`~modelyard.embedded.Predictor` of ``model:version``: loaded on
    first use, then reused by every task this worker process runs (it is never closed; it
    lives as long as the worker)."""
    from modelyard.embedded import Predictor

    key = (settings.model_dump_json(), model, version)
    with _SHARED_LOCK:
        predictor = _SHARED.get(key)
        if predictor is None:
            predictor = _SHARED[key] = Predictor(settings, model, str(version))
        return predictor
