"""The workers' dashboard sockets in one event loop: servers on a private temporary directory,
a client that adds up those that answer, and peers that are gone, silent or hostile."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.app import App, build_app
from modelyard.core.clock import FakeClock
from modelyard.frontends.ui_counts import Want, WindowCounts, merge_counts, render
from modelyard.frontends.ui_series import SUMMARY, FleetCounts, LiveSeries, fleet_timeseries
from modelyard.monitoring import live_dir, live_peers, ui_wiring
from modelyard.monitoring.live_peers import PeerClient, PeerServer
from modelyard.settings import Settings
from tests.unit.frontends.test_ui_api import event


@pytest.fixture
def peers_dir() -> Iterator[str]:
    path = live_dir.prepare_dir()  # what the supervisor does
    assert path is not None
    yield path
    live_dir.remove_dir(path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0)


def three_workers(clock: FakeClock) -> tuple[LiveSeries, LiveSeries, LiveSeries, LiveSeries]:
    """Three workers (the asker and two peers) and one series that saw everything."""
    mine, b, c, everything = (LiveSeries(clock=clock) for _ in range(4))
    for worker, names in ((mine, "aab"), (b, "abbc"), (c, "c")):
        for name in names:
            e = event(name, latency_s=0.01 * len(names), code="OK" if name != "c" else "INTERNAL")
            worker.on_infer(e)
            everything.on_infer(e)
    clock.advance(2)
    return mine, b, c, everything


def test_prepare_dir_is_private_short_and_removed() -> None:
    path = live_dir.prepare_dir()
    assert path is not None
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700 and live_dir.is_private(path)
        longest = live_dir.socket_path(path, str(2**22))
        assert len(os.fsencode(longest)) <= live_dir.MAX_SOCKET_PATH
    finally:
        live_dir.remove_dir(path)
    assert not os.path.exists(path)


def test_a_shared_directory_is_not_private(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    assert not live_dir.is_private(str(tmp_path))
    assert not live_dir.is_private(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("")
    assert not live_dir.is_private(str(tmp_path / "file"))


def test_the_client_adds_up_the_peers_and_skips_the_gone_and_the_silent(
    peers_dir: str, clock: FakeClock
) -> None:
    mine, b, c, everything = three_workers(clock)
    window = mine.window(1, 1, clamp=False)
    # a socket file whose server is gone (a worker killed before the supervisor removed it)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(live_dir.socket_path(peers_dir, "103"))
    stale.close()
    # a peer that accepts connections but never answers
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(live_dir.socket_path(peers_dir, "104"))
    silent.listen(8)
    (Path(peers_dir) / "notes.txt").write_text("not a socket: not asked")

    async def main() -> tuple[dict[str, WindowCounts | None], float, FleetCounts]:
        servers = [PeerServer(peers_dir, b, name="101"), PeerServer(peers_dir, c, name="102")]
        for server in servers:
            await server.start()
        mine_server = PeerServer(peers_dir, mine, name="100")  # its own socket: not asked
        await mine_server.start()
        try:
            client = PeerClient(peers_dir, name="100", timeout_s=0.3)
            started = time.monotonic()
            answers = await client.ask(window, Want(model_requests=True, models=["a", "b", "c"]))
            elapsed = time.monotonic() - started
            return answers, elapsed, await fleet_timeseries(mine, window, 2, client)
        finally:
            for server in [*servers, mine_server]:
                server.close()

    try:
        answers, elapsed, fleet = asyncio.run(main())
    finally:
        silent.close()
    answered = {os.path.basename(path): a is not None for path, a in answers.items()}
    assert answered == {"101.sock": True, "102.sock": True, "103.sock": False, "104.sock": False}
    assert elapsed < 2.0  # the silent one is given up on after the timeout, all at once
    parts = [mine.counts(window), *(a for a in answers.values() if a is not None)]
    merged = merge_counts(window, parts)
    everything_but_routes = Want(model_requests=True, models=None)
    assert merged == everything.counts(everything.window(1, 1), everything_but_routes)
    doc = render(merged, 10, now=0.0, offset=0.0)
    assert {m["model"]: m["requests"] for m in doc["models"]} == {"a": 3, "b": 3, "c": 2}
    assert doc["total"]["errors"] == 2
    assert sorted(os.listdir(peers_dir)) == ["103.sock", "104.sock", "notes.txt"]  # closed
    # a whole timeseries poll over the sockets: both questions, the 2 busiest models
    assert (fleet.answered, fleet.asked) == (3, 5)
    expected = everything.snapshot(everything.window(1, 1), 2)
    assert render(fleet.counts, 2, now=expected["now"], offset=0.0) == {
        **{k: v for k, v in expected.items() if k != "pid"},
        "t0": everything.window(1, 1).first,
    }


async def ask_raw(path: str, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.read()  # the server closes after one answer
    finally:
        writer.close()
        await writer.wait_closed()


def request(points: int = 5, models: list[str] | None = None) -> bytes:
    window = {"first": 1000, "step_s": 1, "points": points}
    data = {"window": window, "model_requests": True, "models": models or [], "routes": False}
    return json.dumps(data).encode() + b"\n"


@pytest.mark.parametrize(
    "payload",
    [
        b"x" * (live_peers.MAX_REQUEST_BYTES + 1) + b"\n",  # too long a line
        b"not json\n",
        request(points=100_000_000),  # more seconds than kept
        request(models=[f"m{i}" for i in range(101)]),  # more series than the page shows
        b'{"first": 0, "step_s": 1, "points": 5}\n',  # a window alone
        b"\xff\xfe\n",
        request()[:-1],  # no newline, then EOF: not a line
    ],
)
def test_a_bad_request_is_refused_and_the_server_goes_on(
    peers_dir: str, clock: FakeClock, payload: bytes
) -> None:
    live = LiveSeries(clock=clock)
    live.on_infer(event())
    clock.advance(2)
    window = live.window(1, 1)

    async def main() -> tuple[Any, WindowCounts | None, int]:
        server = PeerServer(peers_dir, live, name="101")
        await server.start()
        try:
            path = live_dir.socket_path(peers_dir, "101")
            if payload.endswith(b"\n"):
                refused = await ask_raw(path, payload)
            else:  # half-close after the payload
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(payload)
                writer.write_eof()
                refused = await reader.read()
                writer.close()
                await writer.wait_closed()
            (answer,) = (await PeerClient(peers_dir, name="100").ask(window, SUMMARY)).values()
            return json.loads(refused), answer, server.refused
        finally:
            server.close()

    refused, answer, count = asyncio.run(main())
    assert set(refused) == {"error"} and count == 1
    assert answer == live.counts(window, SUMMARY) and answer.model_requests == {"m": 1}


def test_a_request_that_never_comes_is_given_up_on(
    peers_dir: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_peers, "REQUEST_TIMEOUT_S", 0.05)
    live = LiveSeries(clock=clock)

    async def main() -> bytes:
        server = PeerServer(peers_dir, live, name="101")
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(
                live_dir.socket_path(peers_dir, "101")
            )
            answer = await reader.read()  # nothing sent: the server answers and closes
            writer.close()
            await writer.wait_closed()
            return answer
        finally:
            server.close()

    assert "error" in json.loads(asyncio.run(main()))


def test_run_serves_until_cancelled_then_removes_its_socket(
    peers_dir: str, clock: FakeClock
) -> None:
    live = LiveSeries(clock=clock)
    path = live_dir.socket_path(peers_dir, "101")
    Path(path).write_text("left by a dead process with the same pid")

    async def main() -> dict[str, WindowCounts | None]:
        server = PeerServer(peers_dir, live, name="101")
        task = asyncio.create_task(server.run())
        for _ in range(1000):  # let it bind (yields to the loop, no sleeping)
            await asyncio.sleep(0)
            if server._server is not None:
                break
        answers = await PeerClient(peers_dir, name="100").ask(live.window(1, 1), SUMMARY)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return answers

    answers = asyncio.run(main())
    assert list(answers) == [path] and answers[path] is not None
    assert not os.path.exists(path)


def test_forget_removes_a_dead_workers_socket(peers_dir: str) -> None:
    path = Path(live_dir.socket_path(peers_dir, "4321"))
    path.write_text("")
    live_dir.forget(peers_dir, 4321)
    live_dir.forget(peers_dir, 4321)  # already gone: fine
    assert not path.exists()


def test_no_directory_means_no_peers(tmp_path: Path) -> None:
    client = PeerClient(str(tmp_path / "gone"))
    assert asyncio.run(client.ask(LiveSeries().window(1, 1), SUMMARY)) == {}


# ---- wiring ----------------------------------------------------------------------------------
def build(tmp_path: Path, **settings: Any) -> App:
    base = Settings.model_construct(registry=str(tmp_path / "reg"), grpc_port=-1, **settings)
    app = build_app(base, features=False)
    ui_wiring.install(app)
    return app


def test_a_single_process_has_no_socket(tmp_path: Path) -> None:
    app = build(tmp_path)
    try:
        assert app.background == [] and app.closers == []
    finally:
        app.close()


def test_a_worker_serves_its_counts_in_the_directory(tmp_path: Path, peers_dir: str) -> None:
    app = build(tmp_path, live_peers_dir=peers_dir)
    try:
        (run,) = app.background
        assert len(app.closers) == 1
        live = app.extras["ui_live"]
        assert isinstance(live, LiveSeries)

        async def main() -> list[str]:
            task = asyncio.create_task(run())
            for _ in range(1000):
                await asyncio.sleep(0)
                if os.listdir(peers_dir):
                    break
            names = os.listdir(peers_dir)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return names

        assert asyncio.run(main()) == [f"{os.getpid()}.sock"]
        assert os.listdir(peers_dir) == []
    finally:
        app.close()


def test_a_directory_others_may_enter_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    app = build(tmp_path, live_peers_dir=str(shared))
    try:
        assert app.background == [] and os.listdir(shared) == []
    finally:
        app.close()
