"""A model's size in the cache does not depend on load order: ONNX Runtime's one-time set-up of
a process (about 10 MB) is paid before the first measured load, not charged to that model. Each
order runs in a fresh process (this one has set ONNX Runtime up long ago)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.registry.registry import Registry
from modelyard.types import Datatype
from tests.testmodels import identity_model, linear_fp32_model

pytestmark = pytest.mark.integration

SCRIPT = """
import json
import sys
from modelyard.app import build_app
from modelyard.core.model_cache import CacheKey
from modelyard.settings import Settings

app = build_app(Settings.model_construct(registry=sys.argv[1]), features=False)
for name in sys.argv[2:]:
    app.cache.get_sync(CacheKey(name, 1))
print(json.dumps({e.key.model: e.bytes for e in app.cache.entries()}))
"""


def sizes(registry: Path, *order: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(registry), *order],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return found


def test_the_first_model_is_not_charged_for_onnx_runtimes_set_up(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg") as reg:
        reg.push(linear_fp32_model(tmp_path / "a.onnx"), name="a")
        reg.push(identity_model(Datatype.FP32, tmp_path / "b.onnx"), name="b")
    first_a = sizes(tmp_path / "reg", "a", "b")
    first_b = sizes(tmp_path / "reg", "b", "a")
    for name in ("a", "b"):
        assert first_a[name] < 4 * 2**20 and first_b[name] < 4 * 2**20, (first_a, first_b)
