"""Scorers and the ``modelyard batch`` command in-process (remote: over a mock transport)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.errors import InvalidInputError, ModelNotFoundError, UnavailableError
from modelyard.frontends.codec import decode_infer_request, encode_infer_response
from modelyard.jobs.scoring import LocalScorer, RemoteScorer
from modelyard.settings import Settings
from modelyard.types import InferResponse
from tests.unit.jobs.conftest import FEATURES, expected_output, feature_table, write_parquet

METADATA = {
    "name": "linear",
    "versions": ["1", "2"],
    "platform": "onnx",
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, FEATURES]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}],
    "parameters": {"served_version": "2", "feature_names": [f"f{j}" for j in range(FEATURES)]},
}


def fake_server(
    seen: list[httpx.Request], fail_first: int = 0
) -> Callable[[httpx.Request], httpx.Response]:
    """A V2 server in a function: metadata, and infer = sum of the features (binary data)."""
    failures = [fail_first]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if failures[0] > 0:
            failures[0] -= 1
            return httpx.Response(503, json={"error": "warming up"})
        path = request.url.path
        if request.method == "GET" and path.startswith("/v2/models/linear"):
            return httpx.Response(200, json=METADATA)
        if path == "/v2/models/linear/versions/2/infer":
            length = int(request.headers["Inference-Header-Content-Length"])
            infer = decode_infer_request(request.content, length, 1 << 24)
            x = infer.inputs["input"]
            out = InferResponse("linear", "2", {"output": x.sum(axis=1, keepdims=True)})
            body, json_length = encode_infer_response(out, infer)
            headers = {"Inference-Header-Content-Length": str(json_length)}
            return httpx.Response(200, content=body, headers=headers)
        return httpx.Response(404, json={"error": f"no model at {path}"})

    return handle


def remote(seen: list[httpx.Request], **kwargs: object) -> RemoteScorer:
    handler = fake_server(seen, **kwargs)  # type: ignore[arg-type]
    return RemoteScorer(
        "http://server:8080/",
        "linear",
        "production",
        transport=httpx.MockTransport(handler),
        backoff_s=0,
    )


def test_remote_scorer_pins_the_served_version_and_speaks_binary() -> None:
    seen: list[httpx.Request] = []
    scorer = remote(seen)
    try:
        assert (scorer.version, scorer.feature_names["input"][3]) == (2, "f3")
        x = np.arange(3 * FEATURES, dtype=np.float32).reshape(3, FEATURES)
        out = scorer.submit({"input": x}, ["output"]).result()
    finally:
        scorer.close()
    np.testing.assert_array_equal(out["output"], x.sum(axis=1, keepdims=True))
    assert seen[0].url.path == "/v2/models/linear/versions/production"
    post = seen[1]
    header = orjson.loads(post.content[: int(post.headers["Inference-Header-Content-Length"])])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == x.nbytes
    assert header["parameters"]["binary_data_output"] is True


def test_remote_scorer_retries_what_is_temporary() -> None:
    seen: list[httpx.Request] = []
    scorer = remote(seen, fail_first=2)
    scorer.close()
    assert len(seen) == 3 and scorer.version == 2


def test_remote_errors_map_to_modelyard_errors() -> None:
    with pytest.raises(ModelNotFoundError, match="HTTP 404: no model at /v2/models/nope"):
        RemoteScorer("http://server", "nope", None, transport=httpx.MockTransport(fake_server([])))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(UnavailableError, match="connection refused"):
        RemoteScorer(
            "http://server",
            "x",
            None,
            transport=httpx.MockTransport(refuse),
            retries=1,
            backoff_s=0,
        )


def test_local_scorer_pins_the_version(linear_registry: str) -> None:
    scorer = LocalScorer(Settings(registry=linear_registry), "linear", "production")
    try:
        assert (scorer.model, scorer.version) == ("linear", 1)
        x = np.ones((4, FEATURES), dtype=np.float32)
        np.testing.assert_array_equal(scorer.submit({"input": x}).result()["output"], [[20.0]] * 4)
    finally:
        scorer.close()


def test_batch_command_end_to_end(linear_registry: str, tmp_path: Path) -> None:
    src = write_parquet(tmp_path / "in" / "rows.parquet", 300, row_group_rows=100)
    out = tmp_path / "out"
    args = ["batch", "linear@production", "--registry", linear_registry, "--input", str(src)]
    args += ["--output", str(out), "--key", "id", "--part-rows", "100", "--batch-rows", "64"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "linear:1: scored 300 rows in 3 parts (0 already done)" in result.output
    assert "part 3/3 done: part-00002" in result.output
    table = ds.dataset(out).to_table().sort_by("id")
    ids = table.column("id").to_numpy()
    np.testing.assert_allclose(table.column("output").to_numpy(), expected_output(ids), rtol=1e-6)
    again = CliRunner().invoke(main, args)
    assert "scored 0 rows in 0 parts (3 already done)" in again.output


def test_batch_command_names_the_missing_column(linear_registry: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(feature_table(5), src)
    args = ["batch", "linear", "--registry", linear_registry, "--input", str(src)]
    args += ["--output", str(tmp_path / "out"), "--key", "id", "--columns", "f1,f2,zz"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "error: model input 'input' takes 20 feature columns; 3 are named" in result.output
    args[-1] = ",".join([*(f"f{j}" for j in range(19)), "zz"])
    result = CliRunner().invoke(main, args)
    assert "error: column 'zz' (model input 'input') is missing from in.parquet" in result.output


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (("a,,b",), "empty column name"),
        (("x:a", "x:b"), "--columns names input 'x' twice"),
    ],
)
def test_columns_option_errors(columns: tuple[str, ...], message: str) -> None:
    from modelyard.cli_jobs import _columns_option

    with pytest.raises(InvalidInputError, match=message):
        _columns_option(columns)


def test_columns_option_forms() -> None:
    from modelyard.cli_jobs import _columns_option

    assert _columns_option(("a, b",)) == {"": ("a", "b")}
    assert _columns_option(("x:a,b", "y:c")) == {"x": ("a", "b"), "y": ("c",)}
