"""Endpoints in the registry: validated specs, stored atomically, with a revision per endpoint.

``apply`` validates the spec completely (its own rules, then every model and version it names,
against the registry) before it writes anything, and writes in one transaction: the endpoint
row (revision + 1), an event, and the registry change counter (``registry_changes.seq``) that
servers poll to notice changes. Nothing is ever half-applied.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.errors import (
    FailedPreconditionError,
    InvalidInputError,
    ModelYardError,
    NotFoundError,
)
from modelyard.registry.names import validate_name
from modelyard.registry.records import ModelVersion
from modelyard.registry.registry import Registry
from modelyard.registry.store import Tx
from modelyard.traffic.fallback import static_outputs
from modelyard.traffic.spec import EndpointSpec, ModelRef, parse_spec
from modelyard.types import TensorSpec

log = logging.getLogger(__name__)

Problems = list[str]  # (the store's ``list`` method hides the builtin inside the class)
FieldPaths = list[str]


class EndpointNotFoundError(NotFoundError):
    """No endpoint of that name."""


@dataclass(frozen=True)
class EndpointRecord:
    """An endpoint as stored: its spec and when and how often it was applied."""

    name: str
    spec: EndpointSpec
    revision: int
    created_at: float
    updated_at: float

    def to_doc(self) -> dict[str, Any]:
        """The JSON form used by the management API and the CLI."""
        return {
            "name": self.name,
            "revision": self.revision,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "spec": spec_doc(self.spec),
        }


def spec_doc(spec: EndpointSpec) -> dict[str, Any]:
    """A spec as plain JSON data (unset optional parts left out; parses back to ``spec``)."""
    doc: dict[str, Any] = spec.model_dump(mode="json", exclude_none=True)
    fallback = doc.get("fallback")
    if isinstance(fallback, dict) and isinstance(fallback.get("on"), list):
        fallback["on"] = sorted(fallback["on"])  # a set: give it one stable order
    return doc


class EndpointStore:
    """The ``endpoints`` table of a registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # ---- writes -------------------------------------------------------------------------------
    def apply(self, spec: EndpointSpec | Mapping[str, Any]) -> EndpointRecord:
        """Validate and store ``spec`` (create, or replace with revision + 1); returns the record.

        Raises InvalidInputError listing every problem, or a NotFoundError when the only
        problems are models, versions or aliases the registry does not have.
        """
        if not isinstance(spec, EndpointSpec):
            spec = parse_spec(spec)
        self.check(spec)
        now = self.registry.clock.wall()
        text = json.dumps(spec_doc(spec), sort_keys=True, separators=(",", ":"))
        with self.registry.store.transaction(write=True) as tx:
            _bump_changes(tx)
            row = tx.execute(
                "SELECT revision, created_at FROM endpoints WHERE name = ?", (spec.name,)
            ).one()
            revision = 1 if row is None else int(row[0]) + 1
            created = now if row is None else float(row[1])
            tx.execute(
                "INSERT INTO endpoints (name, spec, revision, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, "
                "revision = excluded.revision, updated_at = excluded.updated_at",
                (spec.name, text, revision, created, now),
            )
            _event(tx, now, "endpoint.applied", spec.name, f"revision {revision}", revision)
        return EndpointRecord(spec.name, spec, revision, created, now)

    def delete(self, name: str) -> None:
        """Remove endpoint ``name`` and its live rollout state (its events stay, as the audit
        trail), so an endpoint created again under that name starts its rollout afresh;
        EndpointNotFoundError when there is none."""
        validate_name(name, what="endpoint name")
        now = self.registry.clock.wall()
        with self.registry.store.transaction(write=True) as tx:
            deleted = tx.execute("DELETE FROM endpoints WHERE name = ?", (name,)).rowcount
            if deleted != 1:
                raise EndpointNotFoundError(f"endpoint {name!r} not found")
            tx.execute("DELETE FROM rollouts WHERE endpoint = ?", (name,))
            _bump_changes(tx)
            _event(tx, now, "endpoint.deleted", name, "deleted", None)

    # ---- reads --------------------------------------------------------------------------------
    def get(self, name: str) -> EndpointRecord:
        validate_name(name, what="endpoint name")
        with self.registry.store.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT name, spec, revision, created_at, updated_at FROM endpoints WHERE name = ?",
                (name,),
            ).one()
        if row is None:
            raise EndpointNotFoundError(f"endpoint {name!r} not found")
        return _record(row)

    def list(self, *, skip_invalid: bool = False) -> list[EndpointRecord]:
        """Every endpoint, by name. A stored spec this version cannot read raises
        FailedPreconditionError, or is logged and left out with ``skip_invalid``."""
        with self.registry.store.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT name, spec, revision, created_at, updated_at FROM endpoints ORDER BY name"
            ).rows
        out: list[EndpointRecord] = []
        for row in rows:
            try:
                out.append(_record(row))
            except FailedPreconditionError as exc:
                if not skip_invalid:
                    raise
                log.error("%s", exc.message)
        return out

    def alias_users(self, model: str, alias: str) -> dict[str, FieldPaths]:
        """Endpoint name -> the field paths that name ``model@alias`` explicitly (a reference
        without a version, which follows ``production`` else the newest version, is not one)."""
        users: dict[str, FieldPaths] = {}
        for record in self.list(skip_invalid=True):
            for where, ref in model_refs(record.spec):
                if ref.model == model and ref.version == alias:
                    users.setdefault(record.name, []).append(where)
        return users

    def revision(self) -> int:
        """The registry change counter: it grows with every endpoint apply or delete (and other
        registry changes), so a watcher compares one number to notice that something changed."""
        with self.registry.store.transaction(write=False) as tx:
            return int(tx.execute("SELECT seq FROM registry_changes WHERE id = 1").scalar() or 0)

    # ---- validation ---------------------------------------------------------------------------
    def check(self, spec: EndpointSpec) -> None:
        """Check what the spec's own validation cannot: the models, versions and aliases it names
        exist, the models that answer its requests take the first route's model's inputs, the
        cascade fits its models, static fallbacks are well-formed tensors."""
        missing: Problems = []
        invalid: Problems = []
        resolved: dict[str, ModelVersion] = {}
        for where, ref in model_refs(spec):
            try:
                resolved[where] = self.registry.resolve(ref.model, ref.version)
            except NotFoundError as exc:
                missing.append(f"{where}: {exc.message}")
            except ModelYardError as exc:
                invalid.append(f"{where}: {exc.message}")
        invalid += _signature_problems(resolved)
        if spec.sticky_key is not None and not spec.sticky_key.strip():
            invalid.append("sticky_key: must not be empty")
        invalid += _cascade_problems(spec, resolved)
        invalid += _static_problems(spec, resolved)
        if invalid:
            raise InvalidInputError(
                f"invalid endpoint {spec.name!r}: {'; '.join(invalid + missing)}"
            )
        if missing:
            raise NotFoundError(f"endpoint {spec.name!r}: {'; '.join(missing)}")


def _cascade_problems(spec: EndpointSpec, resolved: Mapping[str, ModelVersion]) -> Problems:
    cascade = spec.cascade
    if cascade is None:
        return []
    problems: Problems = []
    if all(r.model != cascade.first.model for r in spec.routes):
        problems.append(
            f"cascade.first: model {cascade.first.model!r} is served by no route, so the "
            "cascade would never run (route to it, or change cascade.first)"
        )
    mv = resolved.get("cascade.first")
    if mv is None:
        return problems  # reported with the model references
    if mv.manifest.signature.outputs and mv.manifest.signature.output(cascade.output) is None:
        names = [o.name for o in mv.manifest.signature.outputs]
        problems.append(
            f"cascade.output: {mv.ref} has no output {cascade.output!r} (outputs: {names})"
        )
    return problems


def _first_route(resolved: Mapping[str, ModelVersion]) -> ModelVersion | None:
    """The first route's version, when it resolved (``model_refs`` yields it first)."""
    where, mv = next(iter(resolved.items()), ("", None))
    return mv if where.startswith("routes.0 ") else None


def _static_problems(spec: EndpointSpec, resolved: Mapping[str, ModelVersion]) -> Problems:
    """Static fallback answers must be well-formed tensors and, since clients get them in
    place of the model's, outputs of the first route's model: same names, datatypes and
    shapes (a variable dimension matches any size)."""
    problems: Problems = []
    steps = [
        (i, step)
        for i, step in enumerate(spec.fallback.chain if spec.fallback else ())
        if step.kind == "static"
    ]
    mv = _first_route(resolved)  # None: it did not resolve (reported); nothing to compare with
    expected = {} if mv is None else {o.name: o for o in mv.manifest.signature.outputs}
    if not expected:
        mv = None  # a model without declared outputs: nothing to compare with either
    for i, step in steps:
        where = f"fallback.chain.{i}"
        try:
            arrays = static_outputs(step, where)
        except InvalidInputError as exc:
            problems.append(exc.message)
            continue
        if mv is None:
            continue
        for name, array in arrays.items():
            want = expected.get(name)
            field = f"{where}.outputs.{name}"
            if want is None:
                problems.append(
                    f"{field}: {mv.ref} has no output {name!r} (its outputs: "
                    f"{', '.join(sorted(expected))})"
                )
                continue
            datatype = str((step.outputs or {})[name].get("datatype", "")).upper()
            if datatype != want.datatype.value:
                problems.append(f"{field}.datatype: {mv.ref} answers {want.datatype.value}")
            if len(array.shape) != len(want.shape) or any(
                w not in (-1, d) for w, d in zip(want.shape, array.shape, strict=True)
            ):
                problems.append(
                    f"{field}.shape: {list(array.shape)} does not fit {mv.ref}'s {list(want.shape)}"
                )
    return problems


def _signature_problems(resolved: Mapping[str, ModelVersion]) -> Problems:
    """Routes, shadows, fallback models and the rollout candidate all get the requests sent to
    the endpoint, so each must take the first route's model's inputs. The cascade is left out:
    it has checks of its own (``_cascade_problems``)."""
    first = _first_route(resolved)
    if first is None:
        return []  # the first route did not resolve: reported with the model references
    want = first.manifest.signature.inputs
    problems: Problems = []
    for where, mv in list(resolved.items())[1:]:
        if where.startswith("cascade."):
            continue
        got = mv.manifest.signature.inputs
        if not inputs_fit(got, want):
            problems.append(
                f"{where}: {mv.ref}'s inputs ({inputs_text(got)}) do not fit "
                f"{first.ref}'s ({inputs_text(want)})"
            )
    return problems


def inputs_fit(got: Sequence[TensorSpec], want: Sequence[TensorSpec]) -> bool:
    """True when the two input lists can take the same requests: the same names, datatypes,
    and shapes of the same rank whose dimensions are equal or -1 (variable) on either side."""
    wanted = {spec.name: spec for spec in want}
    if len(got) != len(want) or {spec.name for spec in got} != set(wanted):
        return False
    for spec in got:
        other = wanted.get(spec.name)
        if other is None or other.datatype != spec.datatype:
            return False
        if not shapes_fit(spec.shape, other.shape):
            return False
    return True


def shapes_fit(a: Sequence[int], b: Sequence[int]) -> bool:
    """Same rank, and each dimension equal or -1 (variable) on either side."""
    return len(a) == len(b) and all(-1 in (x, y) or x == y for x, y in zip(a, b, strict=True))


def inputs_text(specs: Sequence[TensorSpec]) -> str:
    """``name DATATYPE [shape], ...``: a signature's inputs for a message."""
    return ", ".join(f"{s.name} {s.datatype.value} {list(s.shape)}" for s in specs)


def model_refs(spec: EndpointSpec) -> Iterator[tuple[str, ModelRef]]:
    """Every (field path, model reference) of a spec, the first route's first: for the registry
    checks, and to find the endpoints that use a model's alias."""
    for i, route in enumerate(spec.routes):
        yield f"routes.{i} ({route.name})", route
    for i, shadow in enumerate(spec.shadows):
        yield f"shadows.{i}", shadow
    for i, step in enumerate(spec.fallback.chain if spec.fallback else ()):
        if step.kind == "model" and step.model:
            yield f"fallback.chain.{i}", ModelRef(model=step.model, version=step.version)
    if spec.cascade is not None:
        yield "cascade.first", spec.cascade.first
        yield "cascade.then", spec.cascade.then
    if spec.rollout is not None:
        yield "rollout.candidate", spec.rollout.candidate


def _record(row: tuple[Any, ...]) -> EndpointRecord:
    name = str(row[0])
    try:
        spec = parse_spec(json.loads(row[1]))
    except (InvalidInputError, ValueError) as exc:
        detail = exc.message if isinstance(exc, ModelYardError) else str(exc)
        raise FailedPreconditionError(
            f"stored endpoint {name!r} cannot be read by this ModelYard: {detail}"
        ) from exc
    return EndpointRecord(name, spec, int(row[2]), float(row[3]), float(row[4]))


def _bump_changes(tx: Tx) -> None:
    tx.execute("UPDATE registry_changes SET seq = seq + 1 WHERE id = 1")


def _event(tx: Tx, now: float, kind: str, subject: str, message: str, revision: int | None) -> None:
    data = json.dumps({} if revision is None else {"revision": revision})
    tx.execute(
        "INSERT INTO events (id, ts, kind, subject, message, data) VALUES (?, ?, ?, ?, ?, ?)",
        (uuid.uuid4().hex, now, kind, subject, message, data),
    )
