"""deploy/docker/kserve-entrypoint.sh for real, without a container: the venv's ``modelyard`` on
PATH, a /mnt/models-like directory, ports the test picks. It pushes the model, serves it until
ready (the probe path of the KServe runtime), answers tritonclient, and exits 0 on SIGTERM.

The image itself is not built here (no Docker daemon): tests/unit/test_deploy_manifests.py checks
the Dockerfile and the manifests statically.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from modelyard.registry import Registry
from tests.serverproc import ServerProcess
from tests.testmodels import simple_model

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "docker" / "kserve-entrypoint.sh"
RUNTIME = ROOT / "deploy" / "kserve" / "servingruntime.yaml"
VENV_BIN = Path(sys.executable).parent
MODEL = "fraud-onnx"
WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def entrypoint_env(tmp_path: Path, model_dir: Path, bin_dir: Path = VENV_BIN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    return env | {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "MODEL_NAME": MODEL,
        "MODEL_DIR": str(model_dir),
        "TMPDIR": str(tmp_path),
        "MODELYARD_LOG_FORMAT": "text",
    }


def run_entrypoint(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )


def start_entrypoint(env: dict[str, str], http_port: int, grpc_port: int) -> ServerProcess:
    """The script as the ServingRuntime runs it, with the log pumped as tests/serverproc does."""
    ports = ["--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(
        ["sh", str(SCRIPT), *ports],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: teardown ends every process in it
    )
    server = ServerProcess(proc, http_port, grpc_port)

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with server.logged:
                server.lines.append(line)
                server.logged.notify_all()
        with server.logged:
            server.logged.notify_all()

    server.pump = threading.Thread(target=pump, daemon=True)
    server.pump.start()
    return server


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    model_dir = tmp_path / "mnt" / "models"
    simple_model(model_dir / "model.onnx")
    (model_dir / "README.md").write_text("not a model: ignored\n")
    server = start_entrypoint(entrypoint_env(tmp_path, model_dir), free_port(), free_port())
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)
        server.close()


def test_entrypoint_serves_the_model_until_sigterm(served: ServerProcess) -> None:
    (container,) = yaml.safe_load(RUNTIME.read_text())["spec"]["containers"]
    ready_path = container["readinessProbe"]["httpGet"]["path"]

    def ready() -> bool:
        if served.proc.poll() is not None:
            raise AssertionError(f"exited with {served.proc.returncode}:\n{served.log()}")
        return http_status(served.base_url + ready_path) == 200

    served.wait_for(ready, timeout=WAIT_S)
    served.wait_for(lambda: "modelyard ready" in served.log(), timeout=WAIT_S)  # log caught up
    # exec: the shell became the server, so SIGTERM from the kubelet reaches it directly.
    assert f"pid={served.proc.pid}" in served.log()
    assert f"preloaded {MODEL}" in served.log()  # warm before ready
    assert http_status(served.base_url + "/v2/health/live") == 200
    assert http_status(served.base_url + "/metrics") == 200

    client = httpclient.InferenceServerClient(served.http_url)
    try:
        assert client.is_server_ready() and client.is_model_ready(MODEL)
        assert client.get_model_metadata(MODEL)["platform"] == "onnx"
        input0 = np.arange(32, dtype=np.int32).reshape(2, 16)
        input1 = np.full((2, 16), 3, dtype=np.int32)
        inputs = [
            httpclient.InferInput("INPUT0", [2, 16], "INT32"),
            httpclient.InferInput("INPUT1", [2, 16], "INT32"),
        ]
        inputs[0].set_data_from_numpy(input0)
        inputs[1].set_data_from_numpy(input1, binary_data=False)
        result = client.infer(MODEL, inputs)
    finally:
        client.close()
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), input0 + input1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), input0 - input1)
    assert served.terminate(timeout=WAIT_S) == 0, served.log()


def test_empty_model_dir_fails_with_a_clear_message(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    proc = run_entrypoint(entrypoint_env(tmp_path, empty))
    assert proc.returncode == 2
    assert f"no servable model in {empty}" in proc.stderr
    assert not list(tmp_path.glob("modelyard-kserve.*"))  # stopped before any registry


# ---- which files the script pushes: real `modelyard push`, a stand-in for `serve` --------------
@pytest.fixture
def fake_serve(tmp_path: Path) -> Path:
    """A ``modelyard`` on PATH that runs real pushes and records the serve arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "modelyard"
    stub.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = push ]; then exec "{VENV_BIN / "modelyard"}" "$@"; fi\n'
        f'printf "%s\\n" "$@" > "{tmp_path / "serve-args"}"\n'
    )
    stub.chmod(0o755)
    return bin_dir


def pushed(registry: Path) -> dict[str, int]:
    reg = Registry(registry)
    try:
        return {info.name: info.aliases["production"] for info in reg.list_models()}
    finally:
        reg.close()


def test_a_directory_with_a_manifest_is_pushed_whole(tmp_path: Path, fake_serve: Path) -> None:
    source = Registry(tmp_path / "source")
    try:
        source.push(simple_model(tmp_path / "model.onnx"), name="simple")
    finally:
        source.close()
    (manifest,) = (tmp_path / "source").glob("artifacts/**/modelyard.json")
    env = entrypoint_env(tmp_path, manifest.parent, fake_serve) | {
        "REGISTRY_DIR": str(tmp_path / "r")
    }
    proc = run_entrypoint(env, "--http-port", "9000")
    assert proc.returncode == 0, proc.stderr
    assert pushed(tmp_path / "r") == {MODEL: 1}
    args = (tmp_path / "serve-args").read_text().split()
    assert args[0] == "serve" and args[-2:] == ["--http-port", "9000"]
    assert ["--preload", MODEL] == args[args.index("--preload") :][:2]


def test_a_model_file_path_is_pushed(tmp_path: Path, fake_serve: Path) -> None:
    model = simple_model(tmp_path / "models" / "model.ONNX")
    proc = run_entrypoint(entrypoint_env(tmp_path, model, fake_serve))
    assert proc.returncode == 0, proc.stderr
    (registry,) = tmp_path.glob("modelyard-kserve.*")  # a fresh one under $TMPDIR
    assert pushed(registry) == {MODEL: 1}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["a.onnx", "b.skops"], "2 model files in"),
        (["notes.md"], "no servable model in"),
    ],
)
def test_ambiguous_or_unknown_files_are_refused(
    tmp_path: Path, fake_serve: Path, files: list[str], message: str
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in files:
        (models / name).write_bytes(b"x")
    proc = run_entrypoint(entrypoint_env(tmp_path, models, fake_serve))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "serve-args").exists()


def test_a_failed_push_stops_before_serving(tmp_path: Path, fake_serve: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.pkl").write_bytes(b"x")  # pickles need MODELYARD_ALLOW_PICKLE=true
    proc = run_entrypoint(entrypoint_env(tmp_path, models, fake_serve))
    assert proc.returncode == 1
    assert "modelyard push" in proc.stderr and "failed" in proc.stderr
    assert not (tmp_path / "serve-args").exists()


def test_missing_model_name_is_refused(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path, tmp_path)
    del env["MODEL_NAME"]
    proc = run_entrypoint(env)
    assert proc.returncode == 2 and "MODEL_NAME is not set" in proc.stderr
