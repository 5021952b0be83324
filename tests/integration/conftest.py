"""Real services for integration tests: PostgreSQL and an S3-API server, shared by every module.

* ``postgres_url`` (session): a fresh throwaway database on the PostgreSQL at 127.0.0.1:5432
  (override the admin URL with ``MODELYARD_TEST_POSTGRES``), dropped at the end. When that
  server is unreachable, a throwaway cluster is started with ``initdb`` (as user ``postgres``).
* ``pg_schema_url``: ``postgres_url`` with a fresh schema first on the search path, per test.
* ``s3_server`` (session): moto's S3-API HTTP server on a free port, with a bucket.
* ``make_registry`` / ``pg_s3_registry``: a Registry on PostgreSQL + S3, isolated per test.

A service that cannot be found fails the test when ``CI`` is set and skips it otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import pytest

from modelyard.registry import Registry

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def service_missing(reason: str) -> NoReturn:
    """Fail under CI (a missing service is a broken pipeline), skip on a developer machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


# ---- PostgreSQL --------------------------------------------------------------------------------
def _reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[str | None]:
    """Start a private PostgreSQL (initdb + pg_ctl) on a free port; yields its admin URL."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        yield None
        return
    # initdb refuses to run as root: run the cluster as the postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="modelyard-pg-"))
    data = base / "data"
    port = _free_port()
    try:
        if as_user:
            shutil.chown(base, user="postgres")
        initdb_cmd = [initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run([*as_user, *initdb_cmd], check=True, capture_output=True, timeout=60)
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -F"
        start_cmd = [pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"]
        subprocess.run([*as_user, *start_cmd], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError, LookupError):
        shutil.rmtree(base, ignore_errors=True)
        yield None
        return
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """An admin URL of a running PostgreSQL (the machine's, else a throwaway cluster)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        service_missing("psycopg is not installed (pip install 'modelyard[postgres]')")
    url = os.environ.get("MODELYARD_TEST_POSTGRES", DEFAULT_ADMIN_URL)
    if _reachable(url):
        yield url
        return
    with _throwaway_cluster() as started:
        if started is None or not _reachable(started):
            service_missing(f"no PostgreSQL at {url} and no throwaway cluster could start")
        yield started


def _with_dbname(url: str, dbname: str) -> str:
    return f"{url.rsplit('/', 1)[0]}/{dbname}"


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    import psycopg
    from psycopg import sql

    name = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(postgres_admin_url, name)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_schema_url(postgres_url: str) -> str:
    """``postgres_url`` whose connections use a schema of their own (per test isolation)."""
    import psycopg
    from psycopg import sql

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{postgres_url}?options={quote(f'-csearch_path={schema}')}"


# ---- S3 ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    key: str
    secret: str
    bucket: str
    region: str = "us-east-1"

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server."""
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
        }

    def client(self) -> Any:
        """A boto3 client, to look at or tamper with objects behind the registry's back."""
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-API HTTP server (moto) on 127.0.0.1 and a free port, with a fresh bucket."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        service_missing("moto[server] is not installed")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(
        endpoint_url=f"http://{host}:{port}",
        key="modelyard-test-key",
        secret="modelyard-test-secret",
        bucket=f"modelyard-{uuid.uuid4().hex[:12]}",
    )
    s3.client().create_bucket(Bucket=s3.bucket)
    try:
        yield s3
    finally:
        server.stop()


# ---- registries --------------------------------------------------------------------------------
RegistryFactory = Callable[..., Registry]


@pytest.fixture
def make_registry(
    pg_schema_url: str, s3_server: S3Server, tmp_path: Path
) -> Iterator[RegistryFactory]:
    """Build Registry objects on one per-test PostgreSQL schema and S3 prefix.

    ``make_registry(cache="c2")`` gives another client of the same registry with its own local
    cache directory; extra keyword arguments go to ``Registry``.
    """
    prefix = uuid.uuid4().hex[:12]
    opened: list[Registry] = []

    def make(cache: str = "cache", **kwargs: Any) -> Registry:
        reg = Registry(
            pg_schema_url,
            artifacts=f"s3://{s3_server.bucket}/{prefix}",
            storage_options=s3_server.storage_options(),
            local_cache_dir=tmp_path / cache,
            **kwargs,
        )
        opened.append(reg)
        return reg

    yield make
    for reg in opened:
        reg.close()


@pytest.fixture
def pg_s3_registry(make_registry: RegistryFactory) -> Registry:
    """A Registry on PostgreSQL (fresh schema) + S3 (fresh prefix)."""
    return make_registry()
