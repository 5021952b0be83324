"""MLflow's model registry as a source: copy MLflow model versions into the ModelYard registry,
and keep a ModelYard alias following an MLflow alias.

Data scientists register and promote models in MLflow (``champion`` -> version 7); ModelYard
serves from its own registry (checksummed files, aliases that servers hot-swap). This module is
the bridge, in two operations:

* :func:`import_version` copies one MLflow model version (``models:/fraud/7``,
  ``models:/fraud@champion``; ``mlflow:/`` works as the scheme too) into a new ModelYard version,
  with the MLflow coordinates in its metadata (``metadata["mlflow"]``). Importing the same MLflow
  version again returns the version already made, so it is safe to repeat.
* :func:`sync_alias` looks up where an MLflow alias points now, imports that version if it is not
  there yet, and moves a ModelYard alias (``production`` by default) to it, so every server
  hot-swaps to it. Run it once, on a schedule, or as ``modelyard mlflow sync --watch``.

Which files are taken from the MLflow model (its ``MLmodel`` flavors, :func:`choose_flavor`):
``onnx`` (the ``.onnx`` file), ``sklearn`` saved with ``serialization_format="skops"``,
``xgboost`` (JSON or UBJSON; MLflow's default format name ``xgb`` is UBJSON since XGBoost 2) and
``lightgbm`` boosters (text). scikit-learn models saved as pickle or cloudpickle (MLflow 3
writes skops by default, cloudpickle on Databricks) run code when loaded: they are imported
only with ``allow_pickle``. Models with only a
``python_function`` flavor are refused: convert them to ONNX first.

The MLflow side is reached through :class:`MlflowSource` (``mlflow-skinny``, the extra
``modelyard[mlflow]``); the choices are pure functions tested with tables.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from modelyard.errors import (
    FailedPreconditionError,
    InvalidInputError,
    ModelNotFoundError,
    ModelYardError,
    UnavailableError,
    UnsafeArtifactError,
    install_hint,
)
from modelyard.registry.names import PRODUCTION, validate_alias, validate_name
from modelyard.registry.registry import ModelVersion, Registry
from modelyard.settings import export_to_environment

SCHEMES = ("models:/", "mlflow:/")
#: ``metadata`` key of an imported version: where it came from in MLflow.
METADATA_KEY = "mlflow"
SUPPORTED_FLAVORS = ("onnx", "sklearn", "xgboost", "lightgbm")

_REF = re.compile(r"^(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))$")


# ---- references --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MlflowRef:
    """An MLflow registered model version, by number or by alias (exactly one of them)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if (self.version is None) == (self.alias is None):
            raise InvalidInputError("an MLflow reference needs a version number or an alias")

    def __str__(self) -> str:
        suffix = f"/{self.version}" if self.version is not None else f"@{self.alias}"
        return f"models:/{self.name}{suffix}"


def parse_ref(uri: str) -> MlflowRef:
    """``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` (or ``mlflow:/...``) as an MlflowRef."""
    rest = next((uri[len(s) :] for s in SCHEMES if uri.startswith(s)), None)
    match = None if rest is None else _REF.match(rest)
    if match is None:
        raise InvalidInputError(
            f"not an MLflow model URI: {uri!r} (expected models:/NAME/VERSION or "
            "models:/NAME@ALIAS; mlflow:/ works as the scheme too)"
        )
    version, alias = match["version"], match["alias"]
    return MlflowRef(match["name"], int(version) if version else None, alias)


@dataclass(frozen=True, slots=True)
class MlflowVersion:
    """One model version as MLflow's registry describes it."""

    name: str
    version: int
    source: str
    run_id: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class MlflowRegistry(Protocol):
    """What ModelYard needs from an MLflow tracking server (the real one: MlflowSource)."""

    @property
    def tracking_uri(self) -> str: ...

    def resolve(self, ref: MlflowRef) -> MlflowVersion: ...

    def download(self, version: MlflowVersion, destination: Path) -> Path:
        """The model's directory (holding ``MLmodel``) under ``destination``."""
        ...


# ---- flavors -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FlavorChoice:
    """Which file of an MLflow model to push, and how.

    ``how``: ``copy`` pushes ``path`` renamed to ``filename`` (the name tells the runtime its
    format); ``pickle`` pushes a pickle file (only with ``allow_pickle``)."""

    flavor: str
    path: str
    how: Literal["copy", "pickle"]
    filename: str


def choose_flavor(mlmodel: Mapping[str, Any]) -> FlavorChoice:
    """The flavor of an ``MLmodel`` document that ModelYard serves, in order of preference
    (ONNX first: it is the fastest here); InvalidInputError naming what was found otherwise."""
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, Mapping):
        raise InvalidInputError("the MLmodel file has no flavors")
    onnx = flavors.get("onnx")
    if isinstance(onnx, Mapping) and isinstance(onnx.get("data"), str):
        return FlavorChoice("onnx", onnx["data"], "copy", "model.onnx")
    sk = flavors.get("sklearn")
    if isinstance(sk, Mapping) and isinstance(sk.get("pickled_model"), str):
        if sk.get("serialization_format") == "skops":
            return FlavorChoice("sklearn", sk["pickled_model"], "copy", "model.skops")
        return FlavorChoice("sklearn", sk["pickled_model"], "pickle", "model.pkl")
    xg = flavors.get("xgboost")
    if isinstance(xg, Mapping) and isinstance(xg.get("data"), str):
        fmt = str(xg.get("model_format") or Path(xg["data"]).suffix.lstrip(".") or "xgb")
        if fmt in ("json", "ubj"):
            return FlavorChoice("xgboost", xg["data"], "copy", f"model.{fmt}")
        if fmt == "xgb":  # MLflow's default name; XGBoost >= 2 writes UBJSON under it
            return FlavorChoice("xgboost", xg["data"], "copy", "model.ubj")
        raise InvalidInputError(f"XGBoost model_format {fmt!r} is not supported (json, ubj, xgb)")
    lg = flavors.get("lightgbm")
    if isinstance(lg, Mapping) and isinstance(lg.get("data"), str):
        if str(lg.get("model_class", "")).endswith(".Booster"):
            return FlavorChoice("lightgbm", lg["data"], "copy", "model.txt")
        return FlavorChoice("lightgbm", lg["data"], "pickle", "model.pkl")
    found = ", ".join(sorted(str(f) for f in flavors)) or "none"
    raise InvalidInputError(
        f"no flavor ModelYard can serve (found: {found}; supported: "
        f"{', '.join(SUPPORTED_FLAVORS)}): convert the model to ONNX "
        "(modelyard.convert.to_onnx) and log it with mlflow.onnx"
    )


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "MLmodel"
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidInputError(f"the MLflow model has no MLmodel file ({model_dir.name})") from exc
    except yaml.YAMLError as exc:
        raise InvalidInputError(
            f"the MLflow model's MLmodel file is not valid YAML: {exc}"
        ) from exc
    if not isinstance(doc, dict):
        raise InvalidInputError("the MLflow model's MLmodel file is not a mapping")
    return doc


def _inside(model_dir: Path, relative: str) -> Path:
    """``model_dir / relative``, refusing paths that leave the model directory."""
    path = (model_dir / relative).resolve()
    if not path.is_relative_to(model_dir.resolve()) or not path.is_file():
        raise InvalidInputError(f"the MLmodel file names {relative!r}, not a file of the model")
    return path


def _artifact(model_dir: Path, choice: FlavorChoice, staging: Path, allow_pickle: bool) -> object:
    """What to hand to :meth:`Registry.push` for ``choice``."""
    source = _inside(model_dir, choice.path)
    if choice.how == "pickle" and not allow_pickle:
        raise UnsafeArtifactError(
            f"the MLflow model's {choice.flavor} flavor is a pickle file, which runs code when "
            "loaded: import it with allow_pickle (--allow-pickle) only if you trust who logged "
            "it, or log the model with serialization_format='skops' or as ONNX"
        )
    target = staging / choice.filename
    shutil.copyfile(source, target)
    return target


# ---- import and sync ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ImportResult:
    """``version``: the ModelYard version holding the MLflow version; ``imported``: False when
    an earlier import already had made it."""

    version: ModelVersion
    mlflow: MlflowVersion
    imported: bool


@dataclass(frozen=True, slots=True)
class SyncResult:
    """``action``: ``unchanged`` (the alias already pointed at it), ``moved`` (an earlier import
    was reused) or ``imported``."""

    version: ModelVersion
    mlflow: MlflowVersion
    alias: str
    action: Literal["unchanged", "moved", "imported"]
    previous: int | None = None


def imported_copy(
    registry: Registry, name: str, source: MlflowVersion, tracking_uri: str
) -> ModelVersion | None:
    """The ModelYard version of ``name`` imported from ``source`` earlier, if any."""
    try:
        versions = registry.list_versions(name)
    except ModelNotFoundError:
        return None
    for mv in reversed(versions):
        origin = mv.metadata.get(METADATA_KEY)
        if (
            isinstance(origin, Mapping)
            and origin.get("name") == source.name
            and origin.get("version") == source.version
            and origin.get("tracking_uri") == tracking_uri
        ):
            return mv
    return None


def import_version(
    registry: Registry,
    mlflow: MlflowRegistry,
    ref: MlflowRef | str,
    *,
    name: str | None = None,
    alias: str | None = None,
    allow_pickle: bool = False,
    batching: Mapping[str, int] | None = None,
) -> ImportResult:
    """Copy the MLflow model version ``ref`` into model ``name`` (default: the MLflow name) of
    ``registry``, pointing ``alias`` at it when given. Repeating an import reuses the version it
    made (and still moves ``alias``)."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    name = name or ref.name
    validate_name(name)
    if alias is not None:
        validate_alias(alias)
    source = mlflow.resolve(ref)
    existing = imported_copy(registry, name, source, mlflow.tracking_uri)
    if existing is not None:
        if alias is not None and registry.aliases(name).get(alias) != existing.version:
            registry.set_alias(name, alias, existing.version)
            existing = registry.get_version(name, existing.version)
        return ImportResult(existing, source, imported=False)
    version = _copy(
        registry,
        mlflow,
        source,
        name=name,
        alias=alias,
        allow_pickle=allow_pickle,
        batching=batching,
        via_alias=ref.alias,
    )
    return ImportResult(version, source, imported=True)


def _copy(
    registry: Registry,
    mlflow: MlflowRegistry,
    source: MlflowVersion,
    *,
    name: str,
    alias: str | None,
    allow_pickle: bool,
    batching: Mapping[str, int] | None = None,
    via_alias: str | None = None,
) -> ModelVersion:
    """Download ``source`` and push the files of its servable flavor as a new version of
    ``name`` (``alias`` pointed at it in the same commit)."""
    with tempfile.TemporaryDirectory(prefix="modelyard-mlflow-") as tmp:
        model_dir = mlflow.download(source, Path(tmp) / "download")
        choice = choose_flavor(read_mlmodel(model_dir))
        staging = Path(tmp) / "staging"
        staging.mkdir()
        artifact = _artifact(model_dir, choice, staging, allow_pickle)
        origin = {
            "tracking_uri": mlflow.tracking_uri,
            "name": source.name,
            "version": source.version,
            "uri": source.uri,
            "source": source.source,
            "run_id": source.run_id,
            "flavor": choice.flavor,
        }
        if via_alias is not None:
            origin["alias"] = via_alias
        version = registry.push(
            artifact,
            name=name,
            alias=alias,
            metadata={METADATA_KEY: origin},
            allow_pickle=allow_pickle or None,
            batching=batching,
        )
    return version


def sync_alias(
    registry: Registry,
    mlflow: MlflowRegistry,
    ref: MlflowRef | str,
    *,
    name: str | None = None,
    alias: str = PRODUCTION,
    allow_pickle: bool = False,
) -> SyncResult:
    """Point ModelYard's ``alias`` of ``name`` at the version MLflow's alias ``ref`` names now,
    importing it first if needed."""
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.alias is None:
        raise InvalidInputError(f"sync follows an MLflow alias (models:/NAME@ALIAS), not {ref}")
    name = name or ref.name
    validate_name(name)
    validate_alias(alias)
    source = mlflow.resolve(ref)
    existing = imported_copy(registry, name, source, mlflow.tracking_uri)
    current = _alias_target(registry, name, alias)
    if existing is not None and current == existing.version:
        return SyncResult(existing, source, alias, "unchanged", current)
    if existing is not None:
        registry.set_alias(name, alias, existing.version)
        return SyncResult(
            registry.get_version(name, existing.version), source, alias, "moved", current
        )
    version = _copy(registry, mlflow, source, name=name, alias=alias, allow_pickle=allow_pickle)
    return SyncResult(version, source, alias, "imported", current)


def _alias_target(registry: Registry, name: str, alias: str) -> int | None:
    try:
        return registry.aliases(name).get(alias)
    except ModelNotFoundError:
        return None


# ---- the MLflow client -------------------------------------------------------------------------
@dataclass
class MlflowSource:
    """An MLflow tracking server (and its model registry) reached with ``mlflow-skinny``.

    ``tracking_uri`` None uses MLflow's own default (``MLFLOW_TRACKING_URI``, else its local
    store). ``timeout_s``/``max_retries`` bound each HTTP request (settings ``mlflow_timeout_s``,
    ``mlflow_max_retries``; None keeps MLflow's 120 s and 7 retries); ``progress`` shows MLflow's
    download progress bar (the CLI: when stderr is a terminal). See :func:`configure_client`.
    Errors become ModelYard errors: an unknown model, version or alias is
    ModelNotFoundError (404), a server that cannot be reached UnavailableError (503)."""

    uri: str | None = None
    timeout_s: int | None = None
    max_retries: int | None = None
    progress: bool = False
    _client: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise install_hint("mlflow-skinny", "mlflow") from exc
        configure_client(self.timeout_s, self.max_retries, progress=self.progress)
        self.uri = self.uri or mlflow.get_tracking_uri()
        self._client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def tracking_uri(self) -> str:
        assert self.uri is not None
        return self.uri

    def resolve(self, ref: MlflowRef) -> MlflowVersion:
        with _mlflow_errors(str(ref)):
            if ref.alias is not None:
                mv = self._client.get_model_version_by_alias(ref.name, ref.alias)
            else:
                mv = self._client.get_model_version(ref.name, str(ref.version))
            if getattr(mv, "status", "READY") not in (None, "READY"):
                raise FailedPreconditionError(f"MLflow model version {ref} is {mv.status}")
            return MlflowVersion(
                name=mv.name,
                version=int(mv.version),
                source=str(mv.source),
                run_id=mv.run_id or None,
                aliases=tuple(getattr(mv, "aliases", ()) or ()),
            )

    def download(self, version: MlflowVersion, destination: Path) -> Path:
        import mlflow.artifacts

        destination.mkdir(parents=True, exist_ok=True)
        with _mlflow_errors(version.uri):
            location = self._client.get_model_version_download_uri(
                version.name, str(version.version)
            )
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=str(destination), tracking_uri=self.uri
            )
        return Path(path)


def configure_client(timeout_s: int | None, max_retries: int | None, *, progress: bool) -> None:
    """Apply ModelYard's limits to MLflow's client. MLflow reads them only from its environment
    variables (at each request), so this writes them for this process, through
    :func:`~modelyard.settings.export_to_environment`: ``MLFLOW_HTTP_REQUEST_TIMEOUT``,
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (left as they are when None) and
    ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``. The values come from Settings."""
    values = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true" if progress else "false"}
    if timeout_s is not None:
        values["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout_s)
    if max_retries is not None:
        values["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    export_to_environment(values)


@contextlib.contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """Turn MLflow's exceptions into ModelYard errors that name ``what``."""
    try:
        yield
    except ModelYardError:
        raise
    except Exception as exc:
        error = _translate(exc, what)
        if error is None:
            raise
        raise error from exc


def _translate(exc: Exception, what: str) -> ModelYardError | None:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        code = str(getattr(exc, "error_code", ""))
        # An unknown alias is INVALID_PARAMETER_VALUE "... alias X not found" in MLflow 3.
        missing = code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message.lower()
        if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or missing:
            return ModelNotFoundError(f"MLflow has no {what}: {exc.message}")
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            return InvalidInputError(f"MLflow refused {what}: {exc.message}")
        return UnavailableError(f"MLflow failed on {what}: {exc.message}")
    if isinstance(exc, OSError):
        return UnavailableError(f"MLflow is unreachable for {what}: {exc}")
    return None
