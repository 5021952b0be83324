"""The README's promises hold: two set-up commands that make accepts, real CLI commands and
settings, Python examples that compile.

A full run of ``make test`` from a fresh clone is too slow for the suite; ``.ci/run`` does that
(clean copy of the working tree + fresh venv). Here ``make -n`` checks that the targets resolve.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelyard.cli import main
from modelyard.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def blocks(text: str, *langs: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in langs]


def commands(block: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in block.splitlines())
    return [line for line in lines if line]


def need_make() -> str:
    make = shutil.which("make")
    if make is None:
        if os.environ.get("CI"):
            pytest.fail("make is not installed (CI is set)")
        pytest.skip("make is not installed")
    return make


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.M))


def test_quick_start_has_exactly_two_setup_commands() -> None:
    shell = blocks(section("Quick start"), "sh", "bash", "console", "")
    assert [commands(b) for b in shell] == [["make serve", "make test"]]


@pytest.mark.parametrize("target", ["serve", "test"])
def test_make_accepts_the_setup_commands(target: str) -> None:
    proc = subprocess.run(
        [need_make(), "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert ".venv/bin/" in proc.stdout  # everything runs from the project's own venv
    expected = "modelyard serve --demo" if target == "serve" else "pytest"
    assert expected in proc.stdout


def test_every_make_target_in_the_readme_exists() -> None:
    mentioned = set(re.findall(r"`make ([a-z-]+)`", README))
    assert {"serve", "test", "lint", "typecheck", "unit", "clean"} <= mentioned
    assert mentioned <= makefile_targets()


def test_ci_script_runs_the_readme_test_command() -> None:
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "set -euo pipefail" in text and "export CI=1" in text
    assert re.search(r"^make test\b", text, re.M)
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_python_examples_compile() -> None:
    examples = blocks(README, "python")
    assert len(examples) >= 2
    for code in examples:
        compile(code, "README.md", "exec")


def test_cli_table_matches_the_cli() -> None:
    rows = re.findall(r"^\| `modelyard (\w+)[^`]*` \|", section("Command line"), re.M)
    assert sorted(rows) == sorted(main.commands)


def test_settings_table_names_real_settings() -> None:
    names = re.findall(r"^\| `MODELYARD_(\w+)` \|", section("Settings"), re.M)
    assert len(names) >= 10
    fields = {name.upper() for name in Settings.model_fields} | {"CONFIG"}
    assert set(names) <= fields, set(names) - fields
