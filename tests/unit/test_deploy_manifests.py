"""deploy/: the container image, the Kubernetes manifests and the KServe runtime agree with the
server they run: real settings, real CLI commands, its ports, probes, drain and memory budget.

Kubernetes objects are checked against the schemas kubernetes-validate bundles (offline); the
KServe CRDs are not among them, so their required fields are checked here by hand. No image is
built and nothing is applied: there is no Docker daemon or cluster in the test environment.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, cast

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from kubernetes_validate.utils import all_versions

from modelyard.cli import main
from modelyard.core.dataplane import DataPlane
from modelyard.frontends.rest import RestApp
from modelyard.registry.names import validate_name
from modelyard.runtimes._common import PICKLE_SUFFIXES
from modelyard.runtimes._detect import _DETECTION
from modelyard.runtimes._registry import builtin_kinds
from modelyard.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
KSERVE = DEPLOY / "kserve"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
ENTRYPOINT_SH = DEPLOY / "docker" / "kserve-entrypoint.sh"
MANIFESTS = sorted([*K8S.glob("*.yaml"), *KSERVE.glob("*.yaml")])
DEFAULTS = Settings.model_fields
SETTING_ENV = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
K8S_VERSIONS = sorted(set(all_versions()), key=lambda v: tuple(map(int, v.split("."))))
KUBERNETES_VERSIONS = [K8S_VERSIONS[0], K8S_VERSIONS[-1]]  # oldest and newest bundled schemas


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def objects(directory: Path) -> dict[str, dict[str, Any]]:
    """Kind -> object of every manifest in ``directory`` (one object per kind here)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in docs(path):
            assert doc["kind"] not in found, f"two {doc['kind']} objects"
            found[doc["kind"]] = doc
    return found


def k8s() -> dict[str, dict[str, Any]]:
    return objects(K8S)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return cast(dict[str, Any], only)


def runtime_container() -> dict[str, Any]:
    (first, *_) = objects(KSERVE)["ServingRuntime"]["spec"]["containers"]
    return cast(dict[str, Any], first)


def quantity(text: str | int) -> float:
    """A Kubernetes resource quantity ("4Gi", "500M", "1") as a number."""
    match = re.fullmatch(r"([0-9.]+)([KMGT]i?|m)?", str(text))
    assert match, text
    number, suffix = float(match.group(1)), match.group(2) or ""
    if suffix == "m":
        return number / 1000
    powers = {"K": 1, "M": 2, "G": 3, "T": 4}
    base = 1024 if suffix.endswith("i") else 1000
    return number * base ** powers[suffix[0]] if suffix else number


def configured_env() -> dict[str, str]:
    """The MODELYARD_* values a Deployment replica gets: ConfigMap + Secret + literal env."""
    kinds = k8s()
    env = {**kinds["ConfigMap"]["data"], **kinds["Secret"]["stringData"]}
    env |= {e["name"]: e["value"] for e in container(kinds["Deployment"])["env"] if "value" in e}
    return env


def setting_default(name: str) -> Any:
    return DEFAULTS[name].default


# ---- every file parses; Kubernetes objects match the schemas -----------------------------------
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses(path: Path) -> None:
    for doc in docs(path):
        assert isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str)
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"]


def test_kustomization_lists_every_manifest_and_the_image() -> None:
    (kustomization,) = docs(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    (image,) = kustomization["images"]
    assert image["name"] == container(k8s()["Deployment"])["image"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_match_the_schemas(version: str) -> None:
    kinds = k8s()
    assert {"ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler"} <= set(kinds)
    assert "PodDisruptionBudget" in kinds
    for kind, obj in kinds.items():
        if kind != "Kustomization":
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kserve_runtime_container_matches_the_pod_schema(version: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "modelyard"},
        "spec": {"containers": objects(KSERVE)["ServingRuntime"]["spec"]["containers"]},
    }
    kubernetes_validate.validate(pod, version, strict=True)


def test_schema_validation_rejects_a_broken_object() -> None:
    broken = {**k8s()["Service"], "spec": {"ports": [{"port": "http"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


# ---- KServe: required fields by hand -----------------------------------------------------------
def test_serving_runtime_required_fields() -> None:
    runtime = objects(KSERVE)["ServingRuntime"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    spec = runtime["spec"]
    assert {"v2", "grpc-v2"} <= set(spec["protocolVersions"])
    assert set(spec["protocolVersions"]) <= {"v1", "v2", "grpc-v1", "grpc-v2"}
    first = runtime_container()
    assert first["name"] == "kserve-container" and first["image"]
    for fmt in spec["supportedModelFormats"]:
        assert isinstance(fmt["name"], str) and isinstance(fmt.get("version", ""), str)
        assert isinstance(fmt.get("autoSelect", False), bool)
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert formats == {"onnx", "sklearn", "xgboost", "lightgbm"}
    assert formats <= set(builtin_kinds())


def test_inference_service_uses_the_runtime() -> None:
    kinds = objects(KSERVE)
    isvc, runtime = kinds["InferenceService"], kinds["ServingRuntime"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    validate_name(isvc["metadata"]["name"])  # it becomes the ModelYard model name
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert "." + model["storageUri"].rsplit(".", 1)[1] in script_suffixes()


def script_suffixes() -> set[str]:
    case = re.search(r"case \$lower in\n\s*(.+?)\) return 0", ENTRYPOINT_SH.read_text())
    assert case
    return {p.strip().removeprefix("*") for p in case.group(1).split("|")}


def test_entrypoint_accepts_the_files_push_accepts() -> None:
    pushable = set(PICKLE_SUFFIXES).union(*(suffixes for _, _, suffixes in _DETECTION))
    assert script_suffixes() == pushable


def test_runtime_container_runs_the_entrypoint_with_real_flags() -> None:
    first = runtime_container()
    assert first["command"] == ["modelyard-kserve"]
    script = ENTRYPOINT_SH.read_text()
    for env in first["env"]:
        if not env["name"].startswith(ENV_PREFIX):
            assert "${" + env["name"] in script, f"{env['name']} is not read by the script"
    copy = r"COPY .*kserve-entrypoint\.sh /usr/local/bin/modelyard-kserve\n"
    assert re.search(copy, DOCKERFILE.read_text())
    argv = ["serve", "--registry", "r", "--host", "0.0.0.0", "--preload", "m", *first["args"]]
    assert CliRunner().invoke(main, [*argv, "--help"]).exit_code == 0
    args = dict(zip(first["args"][::2], first["args"][1::2], strict=True))
    assert int(args["--http-port"]) == setting_default("http_port")
    assert int(args["--grpc-port"]) == setting_default("grpc_port")
    assert first["ports"][0]["containerPort"] == setting_default("http_port")
    assert first["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


# ---- settings ----------------------------------------------------------------------------------
def test_every_modelyard_env_var_is_a_real_setting() -> None:
    used: set[str] = set()
    for path in [*MANIFESTS, DOCKERFILE, ENTRYPOINT_SH, DEPLOY / "README.md"]:
        used |= set(re.findall(r"\bMODELYARD_[A-Z0-9_]+", path.read_text()))
    assert {"MODELYARD_REGISTRY", "MODELYARD_ARTIFACTS", "MODELYARD_S3_KEY"} <= used
    assert used <= SETTING_ENV, used - SETTING_ENV


def test_configured_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in configured_env().items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.registry.startswith("postgresql://")  # many replicas: PostgreSQL + S3
    assert settings.artifacts is not None and settings.artifacts.startswith("s3://")
    assert settings.s3_key and settings.s3_secret


def test_replicas_have_the_secret_and_the_configmap() -> None:
    kinds = k8s()
    sources = container(kinds["Deployment"])["envFrom"]
    assert {"name": kinds["ConfigMap"]["metadata"]["name"]} in [
        s.get("configMapRef") for s in sources
    ]
    assert {"name": kinds["Secret"]["metadata"]["name"]} in [s.get("secretRef") for s in sources]
    secret = set(kinds["Secret"]["stringData"])
    assert {"MODELYARD_REGISTRY", "MODELYARD_S3_KEY", "MODELYARD_S3_SECRET"} <= secret
    assert not secret & set(kinds["ConfigMap"]["data"])


# ---- ports, probes, drain, memory --------------------------------------------------------------
def test_ports_and_probes_agree_with_the_server() -> None:
    kinds = k8s()
    main_container = container(kinds["Deployment"])
    ports = {p["name"]: p["containerPort"] for p in main_container["ports"]}
    assert ports == {"http": setting_default("http_port"), "grpc": setting_default("grpc_port")}
    service_ports = {p["name"]: p for p in kinds["Service"]["spec"]["ports"]}
    assert {p["targetPort"] for p in service_ports.values()} == set(ports)
    assert service_ports["grpc"]["appProtocol"] == "grpc"
    router = RestApp(cast(DataPlane, object()), Settings()).router
    probes = {
        "startupProbe": "/v2/health/live",
        "livenessProbe": "/v2/health/live",
        "readinessProbe": "/v2/health/ready",
    }
    for probe, path in probes.items():
        get = main_container[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "http")
        assert router.match("GET", path)[0] is not None
    annotations = kinds["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(setting_default("http_port"))
    assert dict(dockerfile_instructions())["EXPOSE"].split() == [str(p) for p in ports.values()]


def test_grace_period_covers_the_drain() -> None:
    deployment = k8s()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    drain = float(
        configured_env().get("MODELYARD_DRAIN_TIMEOUT_S", setting_default("drain_timeout_s"))
    )
    assert drain >= setting_default("drain_timeout_s")
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # Past the preStop sleep and the drain, models are unloaded: leave at least 10 s for it.
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + 10


def test_memory_matches_the_model_cache_budget() -> None:
    env = configured_env()
    cases = [
        (int(env["MODELYARD_CACHE_BYTES"]), container(k8s()["Deployment"])["resources"]),
        (
            int(
                next(
                    e["value"]
                    for e in runtime_container()["env"]
                    if e["name"].endswith("CACHE_BYTES")
                )
            ),
            runtime_container()["resources"],
        ),
    ]
    for cache_bytes, resources in cases:
        limit = quantity(resources["limits"]["memory"])
        assert quantity(resources["requests"]["memory"]) >= cache_bytes
        assert limit >= cache_bytes * 1.2 and limit - cache_bytes >= 512 * 2**20
        assert "cpu" in resources["requests"]


def test_local_artifact_cache_is_a_volume_big_enough() -> None:
    env = configured_env()
    deployment = k8s()["Deployment"]
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    volume = volumes[mounts[env["MODELYARD_LOCAL_CACHE_DIR"]]]
    assert quantity(volume["emptyDir"]["sizeLimit"]) >= int(env["MODELYARD_LOCAL_CACHE_BYTES"])
    assert "/tmp" in mounts  # readOnlyRootFilesystem: temporary files need a volume


def test_hpa_pdb_and_service_select_the_deployment() -> None:
    kinds = k8s()
    deployment = kinds["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kinds["Service"]["spec"]["selector"].items() <= labels.items()
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] == 2
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] < hpa["minReplicas"]


# ---- the Dockerfile ----------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def test_dockerfile_is_a_multi_stage_slim_non_root_image() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for i, rest in instructions if i == "ARG" and "=" in rest)
    bases = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
        for i, rest in instructions
        if i == "FROM"
    ]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    users = [rest for i, rest in instructions if i == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert (
        int(users[-1])
        == k8s()["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )
    assert dict(instructions)["STOPSIGNAL"] == "SIGTERM"
    extras = set(args["EXTRAS"].split(","))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras <= set(declared["optional-dependencies"]) and not extras & {"dev", "all"}
    assert {"sklearn", "xgboost", "lightgbm", "postgres", "s3"} <= extras
    assert any(i == "RUN" and '".[${EXTRAS}]"' in rest for i, rest in instructions)


def test_dockerfile_command_is_a_real_cli_command() -> None:
    instructions = dict(dockerfile_instructions())
    entrypoint = yaml.safe_load(instructions["ENTRYPOINT"])
    cmd = yaml.safe_load(instructions["CMD"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["modelyard"] and scripts["modelyard"] == "modelyard.cli:main"
    assert cmd == ["serve", "--host", "0.0.0.0"]
    result = CliRunner().invoke(main, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "--host" in result.output


def dockerignored(path: str) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def test_build_context_holds_what_the_dockerfile_copies() -> None:
    copied = [
        shlex.split(rest)
        for i, rest in dockerfile_instructions()
        if i == "COPY" and "--from" not in rest
    ]
    sources = [s for words in copied for s in words[:-1] if not s.startswith("--")]
    assert "src" in sources and "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), source
    assert not dockerignored("src/modelyard/cli.py")
    for kept_out in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "artifacts/x.png"):
        assert dockerignored(kept_out), kept_out
