"""``settings.admin_token``: the check itself, and which REST routes it guards (the real built-in
routes and the real endpoint management routes over fakes, in process, no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from modelyard.errors import UnauthenticatedError
from modelyard.frontends.admin_auth import AdminAuth, bearer
from modelyard.frontends.asgi import HttpRequest, HttpResponse, Route
from modelyard.frontends.rest import create_rest_app
from modelyard.traffic.management import management_routes
from tests.unit.frontends.conftest import Client, make_settings
from tests.unit.frontends.fakes import FakeDataPlane
from tests.unit.frontends.test_rest import simple_doc

TOKEN = "s3cret-token"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}


# ---- the check -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("authorization", "passes"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),  # the scheme is case-insensitive (RFC 9110)
        (f"  Bearer   {TOKEN}  ", True),
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer ", False),
        (TOKEN, False),  # no scheme
        (f"Basic {TOKEN}", False),
        ("Bearer wrong", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer é", False),  # non-ASCII: compared as bytes, no TypeError
    ],
)
def test_check_accepts_only_the_bearer_token(authorization: str | None, passes: bool) -> None:
    auth = AdminAuth(SecretStr(TOKEN))
    assert auth.enabled
    if passes:
        auth.check(authorization)
    else:
        with pytest.raises(UnauthenticatedError):
            auth.check(authorization)


def test_without_a_token_everything_passes() -> None:
    auth = AdminAuth(None)
    assert not auth.enabled
    for value in (None, "", "Bearer anything"):
        auth.check(value)


def test_bearer_builds_the_header_value() -> None:
    assert bearer(TOKEN) == bearer(SecretStr(TOKEN)) == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("route", "changes_state"),
    [
        (Route("GET", "/x", None), False),  # type: ignore[arg-type]
        (Route("HEAD", "/x", None), False),  # type: ignore[arg-type]
        (Route("POST", "/x", None), True),  # type: ignore[arg-type]
        (Route("PUT", "/x", None), True),  # type: ignore[arg-type]
        (Route("DELETE", "/x", None), True),  # type: ignore[arg-type]
        (Route("PATCH", "/x", None), True),  # type: ignore[arg-type]
        (Route("POST", "/x", None, mutating=False), False),  # type: ignore[arg-type]
        (Route("GET", "/x", None, mutating=True), True),  # type: ignore[arg-type]
    ],
)
def test_routes_change_state_unless_read_only(route: Route, changes_state: bool) -> None:
    assert route.changes_state is changes_state


# ---- the REST app --------------------------------------------------------------------------
@dataclass
class _Record:
    name: str
    revision: int = 1

    def to_doc(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision}


@dataclass
class FakeEndpoints:
    """Stands in for both the EndpointStore and the TrafficDataPlane of the management routes."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def list(self) -> list[_Record]:
        return [_Record("scoring")]

    def get(self, name: str) -> _Record:
        return _Record(name)

    def apply(self, spec: dict[str, Any]) -> _Record:
        self.calls.append(("apply", spec["name"]))
        return _Record(spec["name"])

    def delete(self, name: str) -> None:
        self.calls.append(("delete", name))

    def upsert(self, record: _Record) -> None:
        pass

    def remove(self, name: str) -> None:
        pass


@dataclass
class Server:
    client: Client
    dataplane: FakeDataPlane
    endpoints: FakeEndpoints
    feature_calls: list[str]


def make_server(token: str | None) -> Server:
    dataplane, endpoints, feature_calls = FakeDataPlane(), FakeEndpoints(), []
    dataplane.loaded.discard("identity_fp32")  # so that loading it is a visible change

    async def feature_post(req: HttpRequest) -> HttpResponse:
        feature_calls.append(req.path)
        return HttpResponse(204, b"", None)

    routes = [
        *management_routes(endpoints, endpoints),  # type: ignore[arg-type]
        Route("POST", "/v2/feature/act", feature_post),  # a feature's route: guarded by default
        Route("POST", "/v2/feature/query", feature_post, mutating=False),
    ]
    settings = make_settings(admin_token=None if token is None else SecretStr(token))
    app = create_rest_app(dataplane, settings, extra_routes=routes)
    return Server(Client(app), dataplane, endpoints, feature_calls)


SPEC = orjson.dumps({"routes": [{"name": "current", "model": "simple", "weight": 100}]})

# (method, path, body, status when allowed)
MUTATING = [
    ("PUT", "/v2/endpoints/scoring", SPEC, 201),
    ("DELETE", "/v2/endpoints/scoring", b"", 200),
    ("POST", "/v2/repository/models/identity_fp32/load", b"", 200),
    ("POST", "/v2/repository/models/simple/unload", b"", 200),
    ("POST", "/v2/feature/act", b"", 204),
]
OPEN = [
    ("GET", "/v2/health/live", b""),
    ("GET", "/v2/health/ready", b""),
    ("GET", "/v2", b""),
    ("GET", "/v2/models/simple", b""),
    ("GET", "/v2/models/simple/ready", b""),
    ("GET", "/v2/models/simple/config", b""),
    ("GET", "/v2/models/stats", b""),
    ("GET", "/v2/endpoints", b""),
    ("GET", "/v2/endpoints/scoring", b""),
    ("HEAD", "/v2/endpoints/scoring", b""),
    ("GET", "/v1/models", b""),
    ("POST", "/v2/repository/index", b""),
    ("POST", "/v2/models/simple/infer", orjson.dumps(simple_doc())),
    ("POST", "/v2/models/simple/versions/1/infer", orjson.dumps(simple_doc())),
    ("POST", "/v1/models/identity_fp32:predict", b'{"instances": [[0.5, 1.5]]}'),
    ("POST", "/v2/feature/query", b""),
]


def state(server: Server) -> tuple[Any, ...]:
    return (
        sorted(server.dataplane.loaded),
        list(server.endpoints.calls),
        list(server.feature_calls),
    )


@pytest.mark.parametrize(("method", "path", "body", "status"), MUTATING)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "other-scheme"],
)
def test_mutating_routes_are_401_without_the_token_and_change_nothing(
    method: str, path: str, body: bytes, status: int, headers: dict[str, str]
) -> None:
    server = make_server(TOKEN)
    before = state(server)
    response = server.client.request(method, path, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(response.json()) == {"error"} and "token" in response.json()["error"]
    assert TOKEN not in response.text
    assert state(server) == before


@pytest.mark.parametrize(("method", "path", "body", "status"), MUTATING)
def test_mutating_routes_run_with_the_token(
    method: str, path: str, body: bytes, status: int
) -> None:
    server = make_server(TOKEN)
    before = state(server)
    response = server.client.request(method, path, content=body, headers=RIGHT)
    assert response.status_code == status, response.text
    assert "www-authenticate" not in response.headers
    assert state(server) != before


@pytest.mark.parametrize(("method", "path", "body", "status"), MUTATING)
def test_without_admin_token_mutating_routes_stay_open(
    method: str, path: str, body: bytes, status: int
) -> None:
    server = make_server(None)
    response = server.client.request(method, path, content=body)
    assert response.status_code == status, response.text


@pytest.mark.parametrize(("method", "path", "body"), OPEN)
def test_inference_and_reads_need_no_token(method: str, path: str, body: bytes) -> None:
    server = make_server(TOKEN)
    response = server.client.request(method, path, content=body)
    assert 200 <= response.status_code < 300, response.text


def test_other_errors_carry_no_challenge() -> None:
    server = make_server(TOKEN)
    response = server.client.post("/v2/repository/models/nope/load", headers=RIGHT)
    assert response.status_code == 404
    assert "www-authenticate" not in response.headers
