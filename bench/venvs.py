"""Peers live in their own cached venvs under bench/.venvs (gitignored), created on first use.

Each venv is keyed by its exact, pinned requirement list: the list is stamped into the venv and a
venv whose stamp differs is rebuilt. A failed install raises :class:`Skip` with the resolver's
last lines, so the benchmark reports "not installed: reason" for that peer and goes on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import ROOT, Skip

INSTALL_TIMEOUT_S = 20 * 60
_STAMP = ".bench-requirements"


@dataclass(frozen=True)
class PeerEnv:
    """A venv for one peer: a name and pinned requirements (``pkg==version``)."""

    name: str
    requirements: tuple[str, ...]
    why: str = ""  # why a pin differs from the newest release, for BENCHMARKS.md

    def pins(self) -> dict[str, str]:
        return dict(r.split("==", 1) for r in self.requirements if "==" in r)


# MLServer 1.7.1 is the version the issue measured. Its inference-pool workers call
# asyncio.get_event_loop() in a fresh process, which uvloop >= 0.22 refuses: pin 0.21.
MLSERVER = PeerEnv(
    "mlserver",
    (
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        "scikit-learn==1.9.1",
        "onnxruntime==1.32.0",
        "numpy==2.4.6",
        "uvloop==0.21.0",
    ),
    why="uvloop 0.21.0: MLServer 1.7.1's workers fail to start with uvloop >= 0.22",
)
# bentoml 1.4.40 needs a certifi release that the package index here does not have yet.
BENTOML = PeerEnv(
    "bentoml",
    ("bentoml==1.4.39", "onnxruntime==1.32.0", "numpy==2.4.6"),
    why="bentoml 1.4.39: 1.4.40 needs certifi>=2026.10.19, not yet on the index here",
)
GRANIAN = PeerEnv(
    "granian",
    ("granian==2.8.7", "onnxruntime==1.32.0", "numpy==2.4.6", "orjson==3.13.0", "uvloop==0.23.0"),
)
ENVS = {env.name: env for env in (MLSERVER, BENTOML, GRANIAN)}


def _uv() -> list[str] | None:
    local = ROOT / ".venv" / "bin" / "uv"
    if local.exists():
        return [str(local)]
    found = shutil.which("uv")
    return [found] if found else None


def ensure(env: PeerEnv, root: Path, log: Path) -> Path:
    """The venv directory of ``env`` under ``root``, created and installed if needed."""
    venv = root / env.name
    stamp = venv / _STAMP
    wanted = "\n".join(env.requirements) + "\n"
    if stamp.exists() and stamp.read_text() == wanted and (venv / "bin" / "python").exists():
        return venv
    print(f"[bench] creating venv {venv} ({' '.join(env.requirements)}); this takes minutes")
    if venv.exists():
        shutil.rmtree(venv)
    root.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    python = sys.executable
    if uv is not None:
        steps = [
            [*uv, "venv", "--python", python, str(venv)],
            [*uv, "pip", "install", "--python", str(venv / "bin" / "python"), *env.requirements],
        ]
    else:
        steps = [
            [python, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", *env.requirements],
        ]
    with log.open("w") as out:
        for cmd in steps:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            try:
                done = subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S
                )
            except subprocess.TimeoutExpired:
                raise Skip(f"install of {env.name} took over {INSTALL_TIMEOUT_S} s") from None
            if done.returncode != 0:
                reason = _last_error(log)
                raise Skip(f"install of {env.name} failed: {reason} (log {log})")
    stamp.write_text(wanted)
    return venv


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "because" in line.lower() or "unsatisfiable" in line:
            return line[:300]
    return lines[-1][:300] if lines else "no output"
