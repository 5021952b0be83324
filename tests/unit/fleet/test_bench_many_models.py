"""The many-models benchmark's pure parts: a deterministic fleet, Zipf weights, the Lua script,
the static ceiling, the cache-counter deltas and the BENCHMARKS.md section placement."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "many_models"


@pytest.fixture(scope="module", autouse=True)
def _bench_on_path() -> Iterator[None]:
    """The benchmark's modules import each other by plain names (it runs as a script): put its
    directory on the path for this module only, and forget those names afterwards."""
    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))
        for name in ("models", "load", "report", "procs"):
            module = sys.modules.get(name)
            if module is not None and str(BENCH) in str(getattr(module, "__file__", "")):
                del sys.modules[name]


def test_fleet_is_deterministic_and_mixed() -> None:
    from models import fleet

    a, b = fleet(200, seed=7), fleet(200, seed=7)
    assert a == b
    assert [s.name for s in a[:3]] == ["m000", "m001", "m002"]
    kinds = {s.kind for s in a}
    assert kinds == {"onnx", "sklearn", "xgboost"}
    assert fleet(200, seed=8) != a


def test_zipf_weights() -> None:
    from models import zipf_weights

    w = zipf_weights(200, 1.1)
    assert math.isclose(sum(w), 1.0)
    assert w[0] / w[1] == pytest.approx(2**1.1)
    assert w == sorted(w, reverse=True)


def test_lua_script_lists_every_model_and_the_cdf() -> None:
    from load import zipf_script
    from models import fleet

    specs = fleet(5)
    script = zipf_script(specs, 1.1, seed=3)
    for spec in specs:
        assert f'"/v2/models/{spec.name}/infer"' in script
    assert "local cdf = {" in script and ",1.0000000000}" in script
    assert "math.randomseed(3 + (tid or 0))" in script
    assert "WRK_JSON " in script


def test_static_ceiling_and_cache_delta() -> None:
    from report import cache_delta, static_ceiling

    # the best fixed set within 10 bytes: the two small popular models, not the big one
    assert static_ceiling([0.5, 0.3, 0.2], [5, 20, 5], budget=10) == pytest.approx(0.7)
    before = {"stats": {"hits": 10, "misses": 5, "loads": 5, "evictions": 1}}
    after = {"stats": {"hits": 40, "misses": 15, "loads": 15, "evictions": 9}}
    assert cache_delta(before, after, 2.0) == {
        "hit_ratio": 0.75,
        "loads_per_s": 5.0,
        "evictions_per_s": 4.0,
    }


def test_record_appends_its_own_section_and_keeps_others(tmp_path: Path) -> None:
    from report import HEADING, record

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Peer comparison\n\nkeep me\n")
    record(doc, "### run 1\n\n| a |\n")
    record(doc, "### run 2\n\n| b |\n")
    text = doc.read_text()
    assert text.count(HEADING) == 1
    assert text.index("keep me") < text.index(HEADING) < text.index("### run 1")
    assert text.index("### run 1") < text.index("### run 2")
