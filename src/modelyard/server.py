"""One server process: REST (uvicorn or granian: :mod:`modelyard.http_server`) and gRPC on one
asyncio loop, with a graceful life cycle.

Start: bind both ports (live from then on) -> create demo models if asked -> load and warm the
preload models -> ready. SIGTERM/SIGINT: readiness turns false, both servers stop accepting,
in-flight requests finish (up to ``drain_timeout_s``), models are unloaded, exit code 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from modelyard.app import App, build_app
from modelyard.core.model_cache import CacheKey
from modelyard.errors import ModelYardError, UnavailableError
from modelyard.http_server import HttpServer, check_http_server, create_http_server
from modelyard.monitoring.logs import announce
from modelyard.settings import Settings

if TYPE_CHECKING:
    import grpc.aio

    from modelyard.frontends.rest import RestApp

log = logging.getLogger("modelyard.server")


def bind_socket(
    host: str, port: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """Bind the HTTP socket. Without ``listen`` it joins no accept queue until the server
    starts serving on it (asyncio listens then)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UnavailableError(
            f"cannot bind the HTTP server to {host}:{port}: {exc.strerror or exc}"
        ) from exc
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def warn_if_management_open(settings: Settings) -> bool:
    """Log a warning when other hosts can reach the management API and no token guards it."""
    if settings.admin_token is not None or _is_loopback(settings.host):
        return False
    log.warning(
        "binding %s with no admin token: anyone who reaches the port can change endpoints and "
        "load or unload models; set MODELYARD_ADMIN_TOKEN to require it",
        settings.host,
    )
    return True


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def configure_logging(settings: Settings) -> None:
    """Structured (JSON or text) log lines on stderr; see :mod:`modelyard.monitoring.logs`."""
    from modelyard.monitoring.logs import configure_logging as configure

    configure(settings)


async def _preload(app: App) -> None:
    names: list[str] = list(app.settings.preload)
    if app.settings.demo:
        from modelyard.demo import ensure_demo_models

        names += await asyncio.to_thread(ensure_demo_models, app.registry)
    for item in dict.fromkeys(names):
        name, _, ref = item.partition("@")
        mv = await asyncio.to_thread(app.registry.resolve, name, ref or None)
        key = CacheKey(mv.model, mv.version)
        # Pinned, as the repository API's load pins: neither idleness nor the budget takes a
        # preloaded model out (a hot swap moves the pin to the new version).
        app.cache.pin(key)
        await app.cache.load(key)
        log.info("preloaded %s (version %d)", name, mv.version)
    stats = app.cache.stats
    if stats.bytes_in_use > stats.budget_bytes:
        log.warning(
            "the preloaded models take %d bytes, more than the model cache's budget of %d "
            "(cache_bytes): they stay loaded, and other models cannot load until the budget "
            "is raised or models are unloaded",
            stats.bytes_in_use,
            stats.budget_bytes,
        )


async def _run_background(app: App) -> None:
    """Run the features' background coroutines; one failing is logged, the others go on."""

    async def guarded(task: Callable[[], Awaitable[None]]) -> None:
        try:
            await task()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %r failed", task)

    await asyncio.gather(*(guarded(t) for t in app.background))


async def _housekeeping(app: App) -> None:
    ttl = app.settings.idle_unload_s
    if ttl is None:
        return
    period = min(max(ttl / 4, 0.5), 30.0)
    while True:
        await asyncio.sleep(period)
        for key in app.cache.evict_idle():
            log.info("unloaded idle model %s", key)


async def _start_frontends(
    app: App, rest: RestApp, http_sock: socket.socket
) -> tuple[HttpServer, grpc.aio.Server | None]:
    settings = app.settings
    http = create_http_server(settings, rest, http_sock)
    http_port = http_sock.getsockname()[1]  # the HTTP server takes the socket over
    grpc_server = None
    grpc_port = -1
    if settings.grpc_port >= 0:
        from modelyard.frontends.grpc import create_grpc_server

        # Workers share the gRPC port exactly as they share the HTTP one (SO_REUSEPORT).
        shared = bool(http_sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
        grpc_server, grpc_port = create_grpc_server(app.dataplane, settings, reuse_port=shared)
        await grpc_server.start()
    await http.start()
    announce(f"modelyard listening http={http_port} grpc={grpc_port} pid={os.getpid()}")
    return http, grpc_server


async def _until_preloaded(app: App, stop: asyncio.Event) -> bool:
    """Preload; True when done, False when ``stop`` came first. A failed preload raises."""
    preload = asyncio.create_task(_preload(app))
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({preload, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if preload not in done:
        preload.cancel()
        return False
    preload.result()
    return True


async def serve_async(
    app: App, http_sock: socket.socket, stop: asyncio.Event, *, listen_before_ready: bool = True
) -> int:
    """Serve until ``stop`` is set, then drain and shut down. Returns the exit code.

    A single server listens at once (live while models load; ready after). A worker under the
    supervisor listens only once ready, so the kernel never hands it connections it would
    make wait for a model load while its siblings are warm."""
    rest = app.rest_app()
    frontends = None
    housekeeping = asyncio.create_task(_housekeeping(app))
    background = asyncio.create_task(_run_background(app))
    code = 0
    try:
        if listen_before_ready:
            frontends = await _start_frontends(app, rest, http_sock)
        preloaded = await _until_preloaded(app, stop)
        if preloaded and frontends is None:
            frontends = await _start_frontends(app, rest, http_sock)
        if preloaded:
            app.serving.set_ready(True)
            announce(f"modelyard ready pid={os.getpid()} rss_mib={rss_bytes() / 2**20:.1f}")
            await stop.wait()
    except ModelYardError as exc:
        log.error("startup failed: %s", exc.message)
        code = 1
    finally:
        log.info("shutting down: draining in-flight requests")
        app.serving.start_draining()
        rest.start_draining()  # keep-alive clients get `Connection: close`
        housekeeping.cancel()
        background.cancel()
        if frontends is not None:
            http, grpc_server = frontends
            stops: list[Awaitable[None]] = [http.stop()]
            if grpc_server is not None:
                stops.append(grpc_server.stop(app.settings.drain_timeout_s))
            await asyncio.gather(*stops, return_exceptions=True)
        await asyncio.to_thread(app.close)
    return code


def run_server(settings: Settings, *, reuse_port: bool = False, worker_index: int = 0) -> int:
    """Run one server process (or, with ``workers > 1``, the supervisor of N of them).
    ``worker_index`` is this process's slot under a supervisor (0 when alone)."""
    check_http_server(settings)  # before any worker starts: it would only be restarted
    configure_logging(settings)
    if not reuse_port:  # once, in the supervisor or single server, not in every worker
        warn_if_management_open(settings)
    if settings.workers > 1:
        from modelyard.supervisor import Supervisor

        return Supervisor(settings).run()
    http_sock = bind_socket(
        settings.host, settings.http_port, reuse_port=reuse_port, listen=not reuse_port
    )
    app = build_app(settings)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await serve_async(app, http_sock, stop, listen_before_ready=not reuse_port)

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(main())
