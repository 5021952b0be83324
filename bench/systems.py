"""The systems in a benchmark run; each is one small :class:`harness.System` subclass.

All serve the same ONNX model (or, for MLServer's scikit-learn runtime, the same estimator) and
answer the same V2 JSON request, except nginx, which answers a constant V2 response and so marks
the HTTP ceiling of this machine.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from pathlib import Path

import orjson
import venvs
from harness import BENCH, ROOT, Skip, StartError, System, free_port


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class Nginx(System):
    """nginx, one worker, returning the model's V2 response as a constant: the HTTP ceiling."""

    name = "nginx-constant"

    def prepare(self) -> None:
        binary = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
        )
        if binary is None:
            raise Skip("not installed: nginx (apt-get install nginx)")
        self.binary = binary
        prefix = self.ctx.workdir / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        body = self.ctx.expected_response.decode().replace("\\", "\\\\").replace("'", "\\'")
        conf = (BENCH / "nginx.conf").read_text()
        conf = conf.replace("{prefix}", str(prefix)).replace("{port}", str(self.port))
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(conf.replace("{body}", body))
        self.prefix = prefix

    def command(self) -> list[str]:
        return [
            self.binary,
            "-c",
            str(self.conf),
            "-p",
            str(self.prefix),
            "-e",
            str(self.prefix / "error.log"),
        ]

    def versions(self) -> dict[str, str]:
        out = subprocess.run([self.binary, "-v"], capture_output=True, text=True, check=False)
        return {"nginx": out.stderr.strip().split("/")[-1]}


class BaselineUvicorn(System):
    """bench/baseline_asgi.py (raw ASGI + orjson + ONNX Runtime) on uvicorn/httptools/uvloop."""

    name = "baseline-asgi-uvicorn"

    def env(self) -> dict[str, str]:
        return {"BENCH_MODEL_PATH": str(self.ctx.onnx_path), "BENCH_MODEL_NAME": self.ctx.model}

    def cwd(self) -> Path:
        return BENCH

    def command(self) -> list[str]:
        return [
            self.ctx.python,
            "-m",
            "uvicorn",
            "baseline_asgi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    def versions(self) -> dict[str, str]:
        dists = ("uvicorn", "httptools", "uvloop", "orjson", "onnxruntime", "numpy")
        return {p: _version(p) for p in dists}


class BaselineGranian(BaselineUvicorn):
    """The same baseline app on granian (Rust HTTP server), from its own venv."""

    name = "baseline-asgi-granian"

    def prepare(self) -> None:
        self.venv = venvs.ensure(venvs.GRANIAN, self.ctx.venvs, self.ctx.logs / "venv-granian.log")

    def command(self) -> list[str]:
        return [
            str(self.venv / "bin" / "granian"),
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http",
            "1",
            "--no-ws",
            "--workers",
            "1",
            "--runtime-threads",
            "1",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "baseline_asgi:app",
        ]

    def versions(self) -> dict[str, str]:
        return venvs.GRANIAN.pins()


class ModelYard(System):
    """``modelyard serve`` with the model pushed to a fresh registry (batching off: the
    manifest default ``max_batch_size=1``)."""

    name = "modelyard"
    batching: dict[str, int] | None = None

    def prepare(self) -> None:
        from modelyard.registry.registry import Registry

        self.registry = self.ctx.workdir / f"registry-{self.name}"
        with Registry(self.registry) as reg:
            reg.push(
                self.ctx.onnx_path, name=self.ctx.model, alias="production", batching=self.batching
            )

    def env(self) -> dict[str, str]:
        # Works before `pip install -e .` too; an installed modelyard is the same source tree.
        return {"PYTHONPATH": str(ROOT / "src")}

    def command(self) -> list[str]:
        return [
            self.ctx.python,
            "-m",
            "modelyard",
            "serve",
            "--registry",
            str(self.registry),
            "--http-port",
            str(self.port),
            "--grpc-port",
            "-1",
            "--preload",
            self.ctx.model,
        ]

    def versions(self) -> dict[str, str]:
        import modelyard

        dists = ("uvicorn", "httptools", "uvloop", "orjson", "onnxruntime", "numpy")
        return {"modelyard": modelyard.__version__, **{p: _version(p) for p in dists}}


class ModelYardBatching(ModelYard):
    """ModelYard with the batcher on (max 32 rows, 1 ms max wait), set by push-time hints."""

    name = "modelyard-batching"
    batching = {"max_batch_size": 32, "max_wait_us": 1000}  # noqa: RUF012 - read-only


class ModelYardGranian(ModelYard):
    """ModelYard served by granian's embedded server (``--http-server granian``)."""

    name = "modelyard-granian"

    def command(self) -> list[str]:
        return [*super().command(), "--http-server", "granian"]

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "granian": _version("granian")}


class MLServerSklearn(System):
    """MLServer with its scikit-learn runtime on the same fitted estimator (joblib)."""

    name = "mlserver-sklearn"
    implementation = "mlserver_sklearn.SKLearnModel"

    def prepare(self) -> None:
        self.venv = venvs.ensure(
            venvs.MLSERVER, self.ctx.venvs, self.ctx.logs / "venv-mlserver.log"
        )
        self.repo = self.ctx.workdir / self.name
        model_dir = self.repo / self.ctx.model
        model_dir.mkdir(parents=True, exist_ok=True)
        uri = self.install_model(model_dir)
        settings = {
            "host": "127.0.0.1",
            "http_port": self.port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "debug": False,
        }
        (self.repo / "settings.json").write_bytes(orjson.dumps(settings))
        model_settings = {
            "name": self.ctx.model,
            "implementation": self.implementation,
            "parameters": {"uri": uri, "version": "1"},
        }
        (model_dir / "model-settings.json").write_bytes(orjson.dumps(model_settings))

    def install_model(self, model_dir: Path) -> str:
        # Fit with the venv's own scikit-learn: no pickle crosses library versions.
        python = str(self.venv / "bin" / "python")
        cmd = [python, str(BENCH / "models.py"), "--joblib", str(model_dir)]
        done = subprocess.run([*cmd, "--models", self.ctx.model], capture_output=True, text=True)
        if done.returncode != 0:
            raise StartError(f"fitting the model in the MLServer venv failed: {done.stderr[-500:]}")
        (model_dir / f"{self.ctx.model}.joblib").rename(model_dir / "model.joblib")
        return "./model.joblib"

    def cwd(self) -> Path:
        return self.repo

    def command(self) -> list[str]:
        return [str(self.venv / "bin" / "mlserver"), "start", str(self.repo)]

    def versions(self) -> dict[str, str]:
        return venvs.MLSERVER.pins()


class MLServerOnnx(MLServerSklearn):
    """MLServer with a small custom ONNX Runtime MLModel (bench/peers/mlserver_onnx.py)."""

    name = "mlserver-onnx"
    implementation = "mlserver_onnx.OnnxModel"

    def install_model(self, model_dir: Path) -> str:
        shutil.copy(self.ctx.onnx_path, model_dir / "model.onnx")
        shutil.copy(BENCH / "peers" / "mlserver_onnx.py", model_dir / "mlserver_onnx.py")
        return "./model.onnx"

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.repo / self.ctx.model)}


class BentoML(System):
    """A BentoML service (bench/peers/bentoml_service.py) calling ONNX Runtime, one worker."""

    name = "bentoml"

    def prepare(self) -> None:
        self.venv = venvs.ensure(venvs.BENTOML, self.ctx.venvs, self.ctx.logs / "venv-bentoml.log")
        self.home = self.ctx.workdir / "bentoml-home"

    def env(self) -> dict[str, str]:
        return {
            "BENCH_MODEL_PATH": str(self.ctx.onnx_path),
            "BENCH_MODEL_NAME": self.ctx.model,
            "BENTOML_HOME": str(self.home),
            "BENTOML_DO_NOT_TRACK": "true",
        }

    def cwd(self) -> Path:
        return BENCH / "peers"

    def command(self) -> list[str]:
        return [
            str(self.venv / "bin" / "bentoml"),
            "serve",
            "bentoml_service:Model",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def versions(self) -> dict[str, str]:
        return venvs.BENTOML.pins()


# Run order; ratios are against REFERENCE.
ALL: tuple[type[System], ...] = (
    Nginx,
    BaselineUvicorn,
    BaselineGranian,
    ModelYard,
    ModelYardBatching,
    ModelYardGranian,
    MLServerOnnx,
    MLServerSklearn,
    BentoML,
)
REFERENCE = ModelYard.name
BY_NAME = {cls.name: cls for cls in ALL}
