"""`modelyard endpoint apply | list | show | delete` through click's CliRunner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from modelyard.cli import main
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry

SPEC_YAML = """
name: fraud
routes:
  - {name: stable, model: ident, version: 1, weight: 80}
  - {name: new, model: ident, version: 2, weight: 20}
sticky_key: x-user-id
timeout_ms: 50
fallback: {on: [error, timeout], chain: [{kind: model, model: ident, version: 1}]}
cache: {ttl_s: 30}
"""


@pytest.fixture(autouse=True)
def _no_modelyard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MODELYARD_"):
            monkeypatch.delenv(key)


def run(registry_dir: Path, *args: str, stdin: str | None = None) -> Result:
    runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that table cells do not wrap
    return runner.invoke(main, [*args, "--registry", str(registry_dir)], input=stdin)


@pytest.fixture
def reg_dir(registry: Registry, tmp_path: Path) -> Path:
    return tmp_path / "reg"


def test_apply_list_show_delete(reg_dir: Path, tmp_path: Path, registry: Registry) -> None:
    spec_file = tmp_path / "fraud.yaml"
    spec_file.write_text(SPEC_YAML)
    applied = run(reg_dir, "endpoint", "apply", "-f", str(spec_file))
    assert applied.exit_code == 0, applied.output
    assert applied.output.strip() == "endpoint fraud created (revision 1)"
    again = run(reg_dir, "endpoint", "apply", "-f", str(spec_file))
    assert again.output.strip() == "endpoint fraud updated (revision 2)"

    listed = run(reg_dir, "endpoint", "list")
    assert listed.exit_code == 0
    for fragment in ("fraud", "stable=ident@1 80%", "sticky:x-user-id", "fallback", "cache"):
        assert fragment in listed.output

    shown = run(reg_dir, "endpoint", "show", "fraud")
    assert shown.exit_code == 0 and shown.output.startswith("# endpoint fraud, revision 2")
    # What show prints applies again unchanged (round trip).
    assert EndpointStore(registry).apply(yaml.safe_load(shown.output)).spec == (
        EndpointStore(registry).get("fraud").spec
    )

    deleted = run(reg_dir, "endpoint", "delete", "fraud")
    assert deleted.exit_code == 0 and "deleted" in deleted.output
    missing = run(reg_dir, "endpoint", "show", "fraud")
    assert missing.exit_code == 1 and "endpoint 'fraud' not found" in missing.output


def test_apply_reads_stdin(reg_dir: Path) -> None:
    result = run(reg_dir, "endpoint", "apply", "-f", "-", stdin=SPEC_YAML)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        (SPEC_YAML.replace("weight: 20", "weight: 30"), "sum to 100"),
        (SPEC_YAML.replace("model: ident, version: 1}", "model: missing}"), "'missing'"),
    ],
)
def test_apply_errors_are_one_red_line(reg_dir: Path, text: str, fragment: str) -> None:
    result = run(reg_dir, "endpoint", "apply", "-f", "-", stdin=text)
    assert result.exit_code == 1
    assert fragment in " ".join(result.output.split())
    assert "Traceback" not in result.output
