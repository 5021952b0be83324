"""All settings, in one place. The only module that reads environment variables or config files.

Precedence (highest first): explicit keyword arguments (e.g. from CLI flags), ``MODELYARD_*``
environment variables, the YAML file named by ``MODELYARD_CONFIG`` (or passed as ``config_file``),
then the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "MODELYARD_"


class Settings(BaseSettings):
    """ModelYard settings. Every field can be set with ``MODELYARD_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # ---- registry -----------------------------------------------------------------------------
    registry: str = Field(
        default="./.modelyard",
        description="Registry URL: a directory (SQLite + local artifacts inside it), "
        "sqlite:///relative/path.db or sqlite:////absolute/path.db, or postgresql://user@host/db.",
    )
    artifacts: str | None = Field(
        default=None,
        description="Artifact store URL (a directory, file://, s3://bucket/prefix). "
        "Default: <registry dir>/artifacts.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-API server for s3:// artifact stores."
    )
    s3_key: str | None = Field(default=None, description="S3 access key id (else the AWS chain).")
    s3_secret: str | None = Field(default=None, description="S3 secret key (else the AWS chain).")
    local_cache_dir: str | None = Field(
        default=None,
        description="Where artifacts fetched from a remote store are kept locally. "
        "Default: <registry dir or ~/.cache/modelyard>/cache.",
    )
    allow_pickle: bool = Field(
        default=False,
        description="Allow loading pickle/joblib artifacts. They execute code on load: opt in only "
        "for registries you trust.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking server whose model registry `modelyard mlflow` imports "
        "from (e.g. http://mlflow:5000). Default: MLflow's own (its MLFLOW_TRACKING_URI).",
    )
    mlflow_sync_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the controller syncs the models that follow an MLflow alias "
        "(`modelyard mlflow follow`).",
    )
    mlflow_timeout_s: int = Field(
        default=10,
        ge=1,
        description="Timeout of one HTTP request to MLflow, in seconds (MLflow's own default is "
        "120). With mlflow_max_retries it bounds how long an unreachable MLflow can hold "
        "`modelyard mlflow` or a follow.",
    )
    mlflow_max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries (with backoff) of a failed HTTP request to MLflow (MLflow's own "
        "default is 7, about 4 minutes against an unreachable server; its limit is 10).",
    )

    # ---- server -------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Interface the HTTP and gRPC servers bind.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 = pick one).")
    grpc_port: int = Field(
        default=8081, ge=-1, le=65535, description="gRPC port (0 = pick one, -1 = no gRPC)."
    )
    workers: int = Field(default=1, ge=1, le=64, description="Server processes on the same ports.")
    http_server: Literal["uvicorn", "granian"] = Field(
        default="uvicorn",
        description="HTTP server that runs the REST app on the server's event loop: uvicorn, or "
        "granian (Rust HTTP/1.1; needs the 'modelyard[granian]' extra).",
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long in-flight requests may finish."
    )
    preload: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Models (name or name@alias) loaded and warmed before ready, and kept "
        "loaded (pinned: neither idle unload nor the cache budget evicts them).",
    )
    demo: bool = Field(default=False, description="Create and serve the demo models.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that every state-changing management call must carry "
        "(`Authorization: Bearer <token>`; gRPC metadata `authorization`): endpoint PUT/DELETE, "
        "repository load/unload. Inference and reads stay open. Unset: the management API is "
        "open to anyone who reaches the port.",
    )

    # ---- limits -------------------------------------------------------------------------------
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest accepted request body."
    )
    max_tensor_elements: int = Field(
        default=16 * 1024 * 1024, ge=1, description="Largest accepted tensor (elements)."
    )
    default_timeout_s: float | None = Field(
        default=None, gt=0, description="Deadline given to requests that carry none."
    )

    # ---- model cache --------------------------------------------------------------------------
    cache_bytes: int = Field(
        default=4 * 1024**3, ge=1, description="Byte budget of the model cache (loaded runtimes)."
    )
    cache_policy: str = Field(
        default="gdsf",
        pattern="^(lru|gdsf)$",
        description="Which loaded models the cache evicts first when over budget: gdsf "
        "(Greedy-Dual-Size-Frequency: fewest requests x reload seconds per byte, aged) or lru "
        "(least recently used).",
    )
    cache_load_threads: int = Field(
        default=1,
        ge=1,
        description="Threads that load (and unload) models. One keeps loads from fighting each "
        "other and the requests for the GIL (the many-models benchmark serves ~25 % more "
        "requests per CPU-second with 1 than with 2 or 4); raise it when loads mostly wait on "
        "slow remote fetches, so one big download does not hold up the others.",
    )
    idle_unload_s: float | None = Field(
        default=None, gt=0, description="Unload a model after this long without requests."
    )
    load_failure_ttl_s: float = Field(
        default=10.0, ge=0, description="How long a load failure is remembered before a retry."
    )
    resolve_ttl_s: float = Field(
        default=1.0, ge=0, description="How long a name->version resolution is reused."
    )
    inline_predict_us: float = Field(
        default=500.0,
        ge=0,
        description="Predictions whose recent duration is below this run on the event loop, "
        "skipping the hop to an inference thread (0 = always use the threads).",
    )
    inference_threads: int = Field(
        default=4, ge=1, description="Threads that run blocking inference."
    )

    # ---- runtimes -----------------------------------------------------------------------------
    onnx_intra_op_threads: int = Field(
        default=1, ge=0, description="ONNX Runtime intra-op threads."
    )
    onnx_inter_op_threads: int = Field(
        default=1, ge=0, description="ONNX Runtime inter-op threads."
    )
    onnx_graph_optimization: str = Field(
        default="all", pattern="^(disable|basic|extended|all)$", description="ORT graph opt level."
    )
    onnx_providers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("CPUExecutionProvider",), description="ONNX Runtime execution providers, in order."
    )

    # ---- replicas and intervals ---------------------------------------------------------------
    replica_id: str | None = Field(
        default=None,
        description="Name of this server process in per-interval stats (default: host-pid).",
    )
    stats_interval_s: float = Field(
        default=10.0, gt=0, description="Length of a stats interval written to the registry."
    )
    watch_interval_s: float = Field(
        default=2.0, gt=0, description="How often servers poll the registry for changes."
    )
    use_pg_notify: bool = Field(
        default=True, description="On PostgreSQL, also wake watchers with LISTEN/NOTIFY."
    )

    # ---- fleet (many models per box) ----------------------------------------------------------
    local_cache_bytes: int = Field(
        default=20 * 1024**3, ge=0, description="Byte budget of the local disk artifact cache."
    )
    memory_trim: bool = Field(
        default=True,
        description="Give memory freed by unloaded models back to the OS (glibc: fixed mmap "
        "threshold, malloc_trim after unloads), so the server's RSS follows the model cache.",
    )

    # ---- traffic ------------------------------------------------------------------------------
    controller: bool = Field(
        default=True,
        description="Take part in controller election (one active controller per registry).",
    )
    controller_interval_s: float = Field(
        default=5.0, gt=0, description="How often the controller evaluates rollouts."
    )
    shadow_max_concurrency: int = Field(
        default=64,
        ge=0,
        description="Shadow requests in flight per process (sent, queued in the helper or "
        "running); more are dropped. 0 turns shadows off.",
    )
    shadow_max_loop_busy: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="Shadows are dropped while the serving event loop's thread was busy more "
        "than this share of the last 100 ms: they only use capacity the primaries leave idle.",
    )
    shadow_isolation: Literal["process", "inline"] = Field(
        default="process",
        description="Where shadows run: 'process' = a helper process at idle CPU priority "
        "(SCHED_IDLE), so shadows only use CPU the primaries leave idle; 'inline' = on this "
        "process's serving core, dropped while the process is busy.",
    )

    # ---- observability ------------------------------------------------------------------------
    log_level: str = Field(default="info", description="Root log level.")
    log_levels: dict[str, str] = Field(
        default_factory=dict,
        description="Per-component log levels, e.g. {'modelyard.batcher': 'debug'}.",
    )
    log_format: str = Field(
        default="json", pattern="^(json|text)$", description="Log line format: json or text."
    )
    access_log_sample: float = Field(
        default=1.0, ge=0, le=1, description="Fraction of requests written to the access log."
    )
    metrics: bool = Field(default=True, description="Serve Prometheus metrics on /metrics.")
    metrics_dir: str | None = Field(
        default=None,
        description="prometheus-client multiprocess directory (set by the supervisor for "
        "--workers N; default: a fresh temporary directory).",
    )
    prometheus_multiproc_dir: str | None = Field(
        default=None,
        validation_alias=AliasChoices("prometheus_multiproc_dir", "PROMETHEUS_MULTIPROC_DIR"),
        description="prometheus-client's own PROMETHEUS_MULTIPROC_DIR, when the environment "
        "already sets it: a metrics_dir that differs from it is refused.",
    )
    metrics_max_label_values: int = Field(
        default=200,
        ge=1,
        description="Distinct values one metric label (endpoint, model, version, route) keeps "
        "per process; later values are exported as '_other'.",
    )
    ui: bool = Field(
        default=True,
        description="Serve the read-only dashboard on /ui (models, endpoints, live charts).",
    )
    live_peers_dir: str | None = Field(
        default=None,
        description="Private directory (mode 0700) where each worker of --workers N listens on "
        "a Unix socket so that the dashboard's charts add up every worker's traffic. Set by the "
        "supervisor for its workers (a fresh temporary directory); unset: no socket.",
    )
    tracing: bool = Field(default=False, description="Emit OpenTelemetry traces.")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint, e.g. http://collector:4318."
    )
    payload_log: str | None = Field(
        default=None,
        description="Where sampled request/response pairs go: a directory (JSONL or Parquet "
        "files) or redis://host:port/db (a Redis stream). None = off.",
    )
    payload_log_format: str = Field(
        default="jsonl", pattern="^(jsonl|parquet)$", description="File format of payload logs."
    )
    payload_log_rate: float = Field(
        default=0.0, ge=0, le=1, description="Default fraction of requests payload-logged."
    )
    payload_log_redact: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Input/output names never written to payload logs."
    )
    payload_log_queue: int = Field(
        default=10_000, ge=1, description="Payload-log queue size; when full, drop and count."
    )
    drift_interval_s: float = Field(
        default=60.0, gt=0, description="How often the controller computes drift reports."
    )
    payload_log_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="Payload-log rates per endpoint or model name, overriding payload_log_rate "
        '(JSON in the env var, e.g. {"fraud": 0.5}).',
    )
    payload_log_max_bytes: int = Field(
        default=64 * 1024**2, ge=1024, description="Rotate a payload-log file at this size."
    )
    payload_log_rotate_s: float = Field(
        default=3600.0, gt=0, description="Rotate a payload-log file after this many seconds."
    )
    drift_queue: int = Field(
        default=10_000, ge=1, description="Drift-sketch queue size; when full, drop and count."
    )
    drift_window_s: float | None = Field(
        default=None,
        gt=0,
        description="Serving data one drift report covers: the stats intervals that ended in "
        "this window, and since the previous pass (default: drift_interval_s).",
    )
    drift_psi_alarm: float = Field(
        default=0.2, gt=0, description="PSI above which a feature is in drift alarm (warn: half)."
    )
    drift_ks_alarm: float = Field(
        default=0.2, gt=0, le=1, description="Binned KS statistic above which a feature alarms."
    )
    drift_min_rows: int = Field(
        default=200, ge=1, description="Rows a feature needs in a window before drift is judged."
    )

    @field_validator("admin_token")
    @classmethod
    def _non_empty_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty; unset it to leave the management API open")
        return value

    @field_validator("preload", "onnx_providers", "payload_log_redact", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """Lists may be given as ``a,b`` (env vars, flags) as well as YAML/JSON lists."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # ---- derived ------------------------------------------------------------------------------
    def registry_dir(self) -> Path | None:
        """The local directory of an embedded registry, or None for a database URL."""
        if "://" in self.registry:
            if self.registry.startswith("sqlite:///"):
                return Path(self.registry.removeprefix("sqlite:///")).parent
            return None
        return Path(self.registry)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``MODELYARD_CONFIG`` (keys are field names)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if not path:
            return {}
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the settings file must hold a mapping")
        return data


def use_config_file(path: str | Path) -> None:
    """Make ``path`` the YAML settings file for this process and the worker processes it
    starts (they inherit the environment variable the YAML source reads)."""
    export_to_environment({f"{ENV_PREFIX}CONFIG": str(path)})


def export_to_environment(values: Mapping[str, str]) -> None:
    """Hand ``values`` to this process's environment (and the processes it starts), for the
    libraries that read their configuration only from there (prometheus-client's multiprocess
    directory, MLflow's HTTP limits). Like the reading, all writing happens here."""
    os.environ.update(values)


def load_settings(**overrides: Any) -> Settings:
    """Settings from env + YAML, with explicit ``overrides`` (None values are ignored) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
