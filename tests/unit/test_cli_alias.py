"""``alias`` refuses to move an alias to a version with other inputs unless ``--force`` (its
clients would break); ``unalias`` removes one. Through click's runner on a SQLite registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.types import Datatype
from tests.testmodels import identity_model, linear_fp32_model


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """``m``: v1 and v3 identity FP32 (INPUT0 [-1, -1]), v2 linear (input FP32 [-1, 20]);
    ``production`` at v1."""
    url = str(tmp_path / "reg")
    ident = identity_model(Datatype.FP32, tmp_path / "ident.onnx")
    with Registry(url) as reg:
        reg.push(ident, name="m")
        reg.push(linear_fp32_model(tmp_path / "linear.onnx"), name="m")
        reg.push(ident, name="m")
        reg.set_alias("m", "production", 1)
    return url


def run(registry: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--registry", registry])
    return result.exit_code, result.output


def production(registry: str) -> int | None:
    with Registry(registry) as reg:
        return reg.aliases("m").get("production")


def test_an_alias_moves_to_a_version_with_the_same_inputs(registry: str) -> None:
    assert run(registry, "alias", "m", "3", "production") == (0, "m@production -> m:3\n")
    assert production(registry) == 3


def test_a_move_to_other_inputs_is_refused_unless_forced(registry: str) -> None:
    code, output = run(registry, "alias", "m", "2", "production")
    assert code == 1
    assert output.startswith("error: m:2's inputs (input FP32 [-1, 20]) differ from those of m:1")
    assert "(INPUT0 FP32 [-1, -1])" in output and "--force" in output
    assert production(registry) == 1
    assert run(registry, "alias", "m", "2", "production", "--force")[0] == 0
    assert production(registry) == 2


def test_a_new_alias_needs_no_force(registry: str) -> None:
    assert run(registry, "alias", "m", "2", "beta")[0] == 0


def test_unalias_removes_it_once(registry: str) -> None:
    assert run(registry, "unalias", "m", "production") == (0, "m@production removed\n")
    assert production(registry) is None
    code, output = run(registry, "unalias", "m", "production")
    assert (code, output) == (1, "error: model 'm' has no alias 'production'\n")


def _apply(registry: str, doc: dict[str, Any]) -> None:
    with Registry(registry) as reg:
        EndpointStore(reg).apply(doc)


def test_unalias_refuses_an_alias_endpoints_name_unless_forced(registry: str) -> None:
    with Registry(registry) as reg:
        reg.set_alias("m", "candidate", 3)
    _apply(
        registry,
        {
            "name": "scoring",
            "routes": [{"name": "current", "model": "m", "version": "production", "weight": 100}],
            "shadows": [{"model": "m", "version": "candidate"}],
            "fallback": {"chain": [{"kind": "model", "model": "m", "version": "production"}]},
        },
    )
    _apply(
        registry,
        {
            "name": "other",
            "routes": [{"name": "only", "model": "m", "version": 1, "weight": 100}],
            "rollout": {
                "candidate": {"model": "m", "version": "candidate"},
                "steps": [{"weight": 50}],
            },
        },
    )
    code, output = run(registry, "unalias", "m", "production")
    assert code == 1
    assert output == (
        "error: m@production is used by endpoint scoring (routes.0 (current), fallback.chain.0); "
        "pass --force to remove it anyway\n"
    )
    assert production(registry) == 1
    code, output = run(registry, "unalias", "m", "candidate")
    assert code == 1
    assert "endpoint other (rollout.candidate), endpoint scoring (shadows.0)" in output
    assert run(registry, "unalias", "m", "production", "--force") == (0, "m@production removed\n")
    assert production(registry) is None


def test_unalias_ignores_other_models_aliases_and_version_numbers(
    registry: str, tmp_path: Path
) -> None:
    with Registry(registry) as reg:
        reg.push(identity_model(Datatype.FP32, tmp_path / "n.onnx"), name="n")
        reg.set_alias("n", "production", 1)
    _apply(
        registry,
        {
            "name": "scoring",
            "routes": [{"name": "a", "model": "n", "version": "production", "weight": 100}],
            "shadows": [{"model": "m", "version": 1}],
        },
    )
    assert run(registry, "unalias", "m", "production") == (0, "m@production removed\n")
