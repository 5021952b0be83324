"""The controller's MLflow pass: ModelYard models that follow an MLflow alias.

``modelyard mlflow follow models:/fraud@champion --alias production`` stores a *follow* in the
model's metadata (``metadata["mlflow_follow"]``: the MLflow URI, the ModelYard alias, the
tracking server in effect when it was made). The controller (one per registry) calls
:meth:`MlflowFollower.start` in every round and, at most every ``mlflow_sync_interval_s``, syncs
each follow (:func:`~modelyard.registry.mlflow_source.sync_alias`) on a thread of the follower's
own: a promotion in MLflow is imported and the ModelYard alias moved, and every server
hot-swaps to it. A slow or unreachable MLflow therefore never holds the controller's round (its
lease renewal and the rollout gates): the next pass starts only after the last one ended.
Pickled models are imported only when the controller's own settings allow pickle; a follow
record cannot ask for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError, ModelYardError
from modelyard.registry.mlflow_source import (
    MlflowRegistry,
    MlflowSource,
    SyncResult,
    parse_ref,
    sync_alias,
)
from modelyard.registry.names import validate_alias, validate_name
from modelyard.registry.registry import Registry

log = logging.getLogger("modelyard.controller")

FOLLOW_KEY = "mlflow_follow"


@dataclass(frozen=True, slots=True)
class Follow:
    """Model ``model``'s alias ``alias`` follows the MLflow alias ``uri``."""

    model: str
    uri: str
    alias: str
    tracking_uri: str | None = None

    def record(self) -> dict[str, Any]:
        return {"uri": self.uri, "alias": self.alias, "tracking_uri": self.tracking_uri}


def parse_follow(model: str, doc: object) -> Follow:
    """A follow record of ``model``'s metadata; InvalidInputError when it is malformed."""
    if not isinstance(doc, Mapping):
        raise InvalidInputError(f"model {model}: {FOLLOW_KEY} must be a mapping")
    uri, alias, tracking = doc.get("uri"), doc.get("alias"), doc.get("tracking_uri")
    if not isinstance(uri, str) or parse_ref(uri).alias is None:
        raise InvalidInputError(f"model {model}: {FOLLOW_KEY}.uri must be models:/NAME@ALIAS")
    if not isinstance(alias, str):
        raise InvalidInputError(f"model {model}: {FOLLOW_KEY}.alias must be a string")
    validate_alias(alias)
    if tracking is not None and not isinstance(tracking, str):
        raise InvalidInputError(f"model {model}: {FOLLOW_KEY}.tracking_uri must be a string")
    return Follow(model, uri, alias, tracking)


def follows(registry: Registry) -> list[Follow]:
    """Every follow in the registry (malformed records are logged and left out)."""
    found = []
    for info in registry.list_models():
        doc = info.metadata.get(FOLLOW_KEY)
        if doc is None:
            continue
        try:
            found.append(parse_follow(info.name, doc))
        except ModelYardError as exc:
            log.warning("ignoring a follow: %s", exc.message)
    return found


def set_follow(registry: Registry, follow: Follow) -> Follow:
    """Store ``follow`` (creating the model when it does not exist yet); replaces an earlier
    follow of the same model."""
    validate_name(follow.model)
    checked = parse_follow(follow.model, follow.record())
    registry.create_model(follow.model, metadata={FOLLOW_KEY: checked.record()})
    return checked


def remove_follow(registry: Registry, model: str) -> bool:
    """Stop following; False when ``model`` followed nothing."""
    if registry.get_model(model).metadata.get(FOLLOW_KEY) is None:
        return False
    registry.update_model_metadata(model, {FOLLOW_KEY: None})
    return True


class MlflowFollower:
    """Syncs every follow at most every ``interval_s`` (of ``clock``); :meth:`start` is the
    controller's pass (:meth:`round` the same, waited for). ``source_for`` builds the MLflow
    client of a tracking URI (None: the default one), once per URI."""

    def __init__(
        self,
        registry: Registry,
        *,
        interval_s: float,
        tracking_uri: str | None = None,
        allow_pickle: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        source_for: Callable[[str | None], MlflowRegistry] = MlflowSource,
    ) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self.tracking_uri = tracking_uri
        self.allow_pickle = allow_pickle
        self.clock = clock
        self._source_for = source_for
        self._sources: dict[str | None, MlflowRegistry] = {}
        self._last: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def _due(self) -> bool:
        """True (and the interval restarted) when ``interval_s`` has passed since last time."""
        now = self.clock.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return True

    def start(self) -> bool:
        """The controller's pass, which never waits for MLflow: when due, sync every follow on
        a daemon thread (a stuck MLflow call does not hold shutdown either). Skipped, with a
        warning, while the previous pass still runs. True when a pass was started."""
        if self._closed.is_set():
            return False
        if self._thread is not None and self._thread.is_alive():
            if self._due():
                log.warning("mlflow follows: the previous pass is still running; skipped")
            return False
        if not self._due():
            return False
        self._thread = threading.Thread(
            target=self._run, name="modelyard-mlflow-follow", daemon=True
        )
        self._thread.start()
        return True

    def _run(self) -> None:
        try:
            self.sync_all()
        except Exception as exc:  # e.g. the registry failed: logged, tried again next time
            log.warning("mlflow follows failed: %s", exc)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the running pass (tests, orderly shutdown); True when none runs now."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return thread is None or not thread.is_alive()

    def close(self) -> None:
        """Start no more passes; a running one stops before its next follow."""
        self._closed.set()

    def round(self) -> list[SyncResult]:
        """Sync every follow when ``interval_s`` has passed since the last time, in this
        thread; the syncs that changed an alias."""
        return self.sync_all() if self._due() else []

    def sync_all(self) -> list[SyncResult]:
        """Sync every follow now; the syncs that changed an alias. A failing follow is logged
        and tried again next time."""
        changed = []
        for follow in follows(self.registry):
            if self._closed.is_set():
                break
            try:
                result = sync_alias(
                    self.registry,
                    self._source(follow.tracking_uri or self.tracking_uri),
                    follow.uri,
                    name=follow.model,
                    alias=follow.alias,
                    allow_pickle=self.allow_pickle,
                )
            except ModelYardError as exc:
                log.warning("mlflow follow of %s@%s: %s", follow.model, follow.alias, exc.message)
                continue
            if result.action != "unchanged":
                changed.append(result)
                log.info(
                    "mlflow follow: %s@%s -> version %d (%s, %s)",
                    follow.model,
                    follow.alias,
                    result.version.version,
                    result.mlflow.uri,
                    result.action,
                )
        return changed

    def _source(self, uri: str | None) -> MlflowRegistry:
        source = self._sources.get(uri)
        if source is None:
            source = self._sources[uri] = self._source_for(uri)
        return source
