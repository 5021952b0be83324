"""Embedded use: ``modelyard.load("fraud@production")`` serves a model inside your own process.

A :class:`Predictor` is the serving core of a server process - the same registry, model cache
(single-flight load, warm-up, checksums), signature checks and dynamic batcher - built by
:func:`modelyard.app.build_app` without frontends or feature wiring. The core is asyncio-based,
so it runs on a private event loop in a daemon thread; ``predict`` (blocking, from any thread),
``apredict`` (from any event loop) and ``submit`` (a future, for pipelining) all hand requests to
that loop. Concurrent callers therefore share one batcher per version, exactly as in a server.

A reference follows the registry like a server does: ``name@alias`` (and a bare ``name``) is
re-resolved after ``resolve_ttl_s``, so moving the alias moves the predictor; ``name:3`` stays on
version 3.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import ValidationError

from modelyard.errors import InvalidInputError, UnavailableError
from modelyard.settings import Settings, load_settings
from modelyard.types import Array, InferRequest, InferResponse, RequestContext, Signature

if TYPE_CHECKING:
    from modelyard.app import App
    from modelyard.registry.records import ModelVersion

__all__ = ["Predictor", "load"]

T = TypeVar("T")
Inputs = Mapping[str, Any] | Array | Sequence[Any]


def load(
    model: str,
    *,
    registry: str | None = None,
    settings: Settings | None = None,
    **overrides: Any,
) -> Predictor:
    """Load ``model`` (``name``, ``name@alias`` or ``name:version``) into this process.

    The registry and every other setting come from ``settings`` when given, else from the
    ``MODELYARD_*`` environment and config file with ``registry`` and ``overrides`` (settings
    field names, e.g. ``cache_bytes=...``) on top. The version is fetched, loaded and warmed
    before this returns, so a missing model or a broken artifact fails here, not on the first
    prediction. Close the predictor (or use it as a context manager) to free the model.
    """
    from modelyard.cli_predict import parse_model_ref

    name, ref = parse_model_ref(model)
    try:
        if settings is None:
            settings = load_settings(registry=registry, **overrides)
        elif registry is not None or overrides:
            changes = {
                k: v for k, v in {"registry": registry, **overrides}.items() if v is not None
            }
            settings = Settings(**{**settings.model_dump(), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise InvalidInputError(f"setting '{field}': {first['msg']}") from exc
    return Predictor(settings, name, None if ref is None else str(ref))


class Predictor:
    """An in-process model: ``predict(inputs) -> outputs`` through the serving core.

    ``inputs`` is a mapping of input name to a numpy array (checked as strictly as binary
    tensors on the wire: the datatype must match) or to nested lists / scalars (converted to the
    input's datatype, like JSON ``data``). A model with a single input also takes the array
    itself. Outputs are a dict of output name to numpy array (BYTES as object arrays of bytes),
    exactly what a server would send back for the same inputs.
    """

    def __init__(self, settings: Settings, name: str, ref: str | None = None) -> None:
        from modelyard.app import build_app

        self.name = name
        self.ref = ref
        self._app: App = build_app(settings, features=False)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"modelyard-embedded-{name}", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._warm()
        except BaseException:
            self.close()
            raise
        self._app.serving.set_ready(True)

    def _warm(self) -> None:
        from modelyard.core.model_cache import CacheKey

        mv = self.version_info()
        self._run(self._app.cache.load(CacheKey(mv.model, mv.version)))

    # ---- what it serves -----------------------------------------------------------------------
    def version_info(self) -> ModelVersion:
        """The version the reference names now (resolved through the serving resolver)."""
        return self._app.serving.resolver.resolve_sync(self.name, self.ref)

    @property
    def version(self) -> int:
        return self.version_info().version

    @property
    def signature(self) -> Signature:
        return self.version_info().manifest.signature

    # ---- prediction ---------------------------------------------------------------------------
    def predict(
        self, inputs: Inputs, *, outputs: Sequence[str] | None = None, timeout: float | None = None
    ) -> dict[str, Array]:
        """Run the model on a batch and return its outputs (only ``outputs`` when given).
        ``timeout`` (seconds) becomes the request deadline. Blocking; safe from any thread."""
        return self.submit(inputs, outputs=outputs, timeout=timeout).result()

    async def apredict(
        self, inputs: Inputs, *, outputs: Sequence[str] | None = None, timeout: float | None = None
    ) -> dict[str, Array]:
        """``predict`` for asyncio code: awaits the result without blocking the caller's loop."""
        return await asyncio.wrap_future(self.submit(inputs, outputs=outputs, timeout=timeout))

    def submit(
        self, inputs: Inputs, *, outputs: Sequence[str] | None = None, timeout: float | None = None
    ) -> concurrent.futures.Future[dict[str, Array]]:
        """Queue a prediction and return a future of its outputs (for pipelining)."""
        request = InferRequest(
            inputs=self._arrays(inputs), outputs=None if outputs is None else list(outputs)
        )
        return self._submit(self._outputs(request, timeout))

    def infer(self, request: InferRequest, ctx: RequestContext | None = None) -> InferResponse:
        """The dataplane call itself: a full request in, a full response (with the version that
        served it) out."""
        return self._submit(self._infer(request, ctx or RequestContext())).result()

    async def _outputs(self, request: InferRequest, timeout: float | None) -> dict[str, Array]:
        ctx = RequestContext()
        if timeout is not None:
            ctx.deadline = self._app.clock.monotonic() + timeout
        return (await self._infer(request, ctx)).outputs

    async def _infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse:
        return await self._app.serving.infer(self.name, self.ref, request, ctx)

    def _arrays(self, inputs: Inputs) -> dict[str, Array]:
        from modelyard.cli_predict import to_array

        signature = self.signature
        if not isinstance(inputs, Mapping):
            if len(signature.inputs) != 1:
                names = ", ".join(s.name for s in signature.inputs)
                raise InvalidInputError(
                    f"model '{self.name}' has {len(signature.inputs)} inputs ({names}): pass a "
                    "dict of input name -> data"
                )
            inputs = {signature.inputs[0].name: inputs}
        out: dict[str, Array] = {}
        for name, value in inputs.items():
            spec = signature.input(name)
            if isinstance(value, np.ndarray) or spec is None:
                # Arrays are typed already (checked like binary tensors); unknown names are
                # reported by the dataplane's signature check.
                out[name] = np.asarray(value)
            else:
                out[name] = to_array(name, value, spec.datatype)
        return out

    # ---- plumbing -----------------------------------------------------------------------------
    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coro.close()
            raise UnavailableError(f"the predictor of '{self.name}' is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._submit(coro).result()

    def close(self) -> None:
        """Unload the model and stop the private loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._app.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ref = "" if self.ref is None else (f":{self.ref}" if self.ref.isdigit() else f"@{self.ref}")
        return f"Predictor({self.name}{ref})"
