"""The endpoint spec: the declarative traffic policy of one endpoint (YAML, REST and registry form).

An endpoint is called exactly like a model (``/v2/models/{endpoint}/infer``). Its spec says which
versions serve it and how: weighted routes (A/B, optionally sticky by a request key), shadows,
a fallback chain, a timeout, hedging, a response cache, a cascade, and an optional rollout.
Validation is complete on construction, so a spec that exists is a spec that can be applied.

Example (YAML)::

    name: fraud
    routes:
      - {name: stable, model: fraud, version: production, weight: 100}
    sticky_key: x-user-id
    timeout_ms: 50
    fallback: {on: [error, timeout, nonfinite], chain: [{kind: model, model: fraud-lite}]}
    rollout:
      candidate: {model: fraud, version: candidate}
      steps: [{weight: 20, hold_s: 60}, {weight: 50, hold_s: 60}, {weight: 100, hold_s: 60}]
      gates: {max_error_rate_delta: 0.01, max_p99_ratio: 1.5, min_requests: 200}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelyard.errors import InvalidInputError, InvalidNameError
from modelyard.registry.names import validate_name


def _name(value: str, what: str) -> str:
    try:
        return validate_name(value, what=what)
    except InvalidNameError as exc:
        raise ValueError(exc.message) from exc


VersionRef = int | str | None  # a version number, an alias, or None (production, else newest)


class _Spec(BaseModel):
    # No inf or nan anywhere: JSON (the API, the registry) cannot carry them faithfully.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelRef(_Spec):
    """A model and which of its versions: a number, an alias, or None (production/newest)."""

    model: str
    version: VersionRef = None

    @field_validator("model")
    @classmethod
    def _valid_model(cls, v: str) -> str:
        return _name(v, "model name")

    def label(self) -> str:
        return self.model if self.version is None else f"{self.model}@{self.version}"


class Materialized(_Spec):
    """Answer from table ``table`` (written by ``modelyard materialize``) in ``db`` (None: the
    registry's database); rows are found by the request parameter or header ``key`` when the
    route names one and the request has it, else by the request's inputs. A miss, or rows of
    another version, are answered live (see ``modelyard.traffic.materialized``)."""

    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    db: str | None = None
    key: str | None = None


class Route(ModelRef):
    """A weighted route. Weights of an endpoint's routes sum to 100."""

    name: str
    weight: float = Field(ge=0, le=100)
    materialized: Materialized | None = None


class Compare(_Spec):
    """How a shadow's output is compared with the primary's."""

    output: str | None = Field(default=None, description="output to compare (default: first)")
    kind: Literal["exact", "argmax", "tolerance"] = "tolerance"
    atol: float = Field(default=1e-6, ge=0)
    rtol: float = Field(default=0.0, ge=0)


class Shadow(ModelRef):
    """A fraction of requests is copied to this version after the primary is dispatched."""

    fraction: float = Field(default=1.0, gt=0, le=1)
    compare: Compare = Compare()


class FallbackStep(_Spec):
    """One step of a fallback chain: a backup model, the last good answer, or a constant."""

    kind: Literal["model", "last_good", "static"]
    model: str | None = None
    version: VersionRef = None
    # static outputs: name -> {"datatype": "FP32", "shape": [1], "data": [0.0]}
    outputs: dict[str, dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> FallbackStep:
        if self.kind == "model" and not self.model:
            raise ValueError("a 'model' fallback step needs 'model'")
        if self.kind == "static" and not self.outputs:
            raise ValueError("a 'static' fallback step needs 'outputs'")
        return self


class Fallback(_Spec):
    on: frozenset[Literal["error", "timeout", "nonfinite"]] = frozenset(
        {"error", "timeout", "nonfinite"}
    )
    chain: tuple[FallbackStep, ...] = Field(min_length=1)


class Hedging(_Spec):
    """Send a second copy when the first has not answered after ``delay_ms`` (None = the
    route's recent p95); the first answer wins. At most ``max_fraction`` of requests hedge."""

    delay_ms: float | None = Field(default=None, gt=0)
    max_fraction: float = Field(default=0.05, gt=0, le=1)


class ResponseCache(_Spec):
    ttl_s: float = Field(default=60.0, gt=0)
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)


class Cascade(_Spec):
    """``first`` answers; when its confidence (max of ``output``) is below ``threshold`` the
    request escalates to ``then``."""

    first: ModelRef
    then: ModelRef
    output: str = "probabilities"
    threshold: float = Field(gt=0, le=1)


class RolloutStep(_Spec):
    weight: float = Field(gt=0, le=100, description="percent of traffic on the candidate")
    hold_s: float = Field(default=60.0, gt=0, description="how long the step holds")


class Gates(_Spec):
    """A step advances only when every gate passes against production in the same window."""

    max_error_rate_delta: float = Field(default=0.01, ge=0, le=1)
    max_p99_ratio: float = Field(default=1.5, gt=0)
    min_requests: int = Field(default=100, ge=1)
    min_agreement: float | None = Field(default=None, ge=0, le=1)


class Rollout(_Spec):
    candidate: ModelRef
    steps: tuple[RolloutStep, ...] = Field(min_length=1)
    gates: Gates = Gates()
    promote_alias: str = "production"

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[RolloutStep, ...]) -> tuple[RolloutStep, ...]:
        weights = [s.weight for s in steps]
        if weights != sorted(weights) or len(set(weights)) != len(weights):
            raise ValueError(f"rollout step weights must increase strictly, got {weights}")
        return steps


class EndpointSpec(_Spec):
    name: str
    routes: tuple[Route, ...] = Field(min_length=1)
    sticky_key: str | None = Field(
        default=None, description="header or request parameter whose value pins the route"
    )
    timeout_ms: float | None = Field(default=None, gt=0)
    shadows: tuple[Shadow, ...] = ()
    fallback: Fallback | None = None
    hedging: Hedging | None = None
    cache: ResponseCache | None = None
    cascade: Cascade | None = None
    rollout: Rollout | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return _name(v, "endpoint name")

    # A field validator, not a model one: its problems are reported with the other fields'.
    @field_validator("routes")
    @classmethod
    def _routes_consistent(cls, routes: tuple[Route, ...]) -> tuple[Route, ...]:
        problems = []
        total = sum(r.weight for r in routes)
        if abs(total - 100.0) > 1e-6:
            problems.append(f"route weights must sum to 100, got {total:g}")
        names = [r.name for r in routes]
        if len(set(names)) != len(names):
            problems.append(f"route names must be unique, got {names}")
        if problems:
            raise ValueError("; ".join(problems))
        return routes


def parse_spec(data: Any) -> EndpointSpec:
    """Validate a spec (a dict from YAML/JSON); every problem in one InvalidInputError."""
    try:
        return EndpointSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInputError(f"invalid endpoint spec: {problems}") from exc
