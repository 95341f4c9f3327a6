"""Start and stop the whole platform: servers (embedded unless configured), the Stripe and
GoCardless sandboxes (unless real providers are configured), migrations, topics, and the six
services and the portal as separate processes on fixed ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

from billing_runtime.embedded import (
    TansuBroker,
    drop_database,
    ensure_database,
    free_port,
    port_open,
    start_embedded_postgres,
    start_mail_sink,
    stop_embedded_postgres,
    with_database,
)
from billing_runtime.kafka import ensure_topics
from billing_runtime.migrations import migrations_dir, upgrade


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str
    default_port: int

    @property
    def port_env(self) -> str:
        return f"BILLING_{self.package.upper()}_PORT"

    @property
    def workers_env(self) -> str:
        return f"BILLING_{self.package.upper()}_WORKERS"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("usage-ingest", "usage_ingest", 8101),
    ServiceSpec("rating", "rating", 8102),
    ServiceSpec("invoicing", "invoicing", 8103),
    ServiceSpec("payments", "payments", 8104),
    ServiceSpec("dunning", "dunning", 8105),
    ServiceSpec("notify", "notify", 8106),
    ServiceSpec("portal", "portal", 8107),
)


@dataclass(frozen=True)
class SandboxSpec:
    """A provider sandbox (`python -m provider_sandboxes <provider>`) and the payments setting
    that points the service at it; when that setting is given, the real provider is used."""

    provider: str
    default_port: int
    payments_env: str

    @property
    def port_env(self) -> str:
        return f"BILLING_{self.provider.upper()}_SANDBOX_PORT"


SANDBOXES: tuple[SandboxSpec, ...] = (
    SandboxSpec("stripe", 12111, "PAYMENTS_STRIPE_API_BASE"),
    SandboxSpec("gocardless", 12112, "PAYMENTS_GOCARDLESS_BASE_URL"),
)


def log(message: str) -> None:
    print(message, flush=True)


class StartupRefused(SystemExit):
    """`billing up` cannot start (a port taken, a process that died): the message says what to do."""

    exit_code = 4

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def port_free(port: int) -> bool:
    """Nothing answers on 127.0.0.1:`port` and it can be bound (as uvicorn binds it)."""
    if port_open("127.0.0.1", port):
        return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` (or one of its children: uvicorn's workers) holds the listening socket."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for process in family:
        with contextlib.suppress(psutil.Error):
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in process.net_connections("tcp")):
                return True
    return False


def log_tail(path: Path, lines: int = 3) -> str:
    with contextlib.suppress(OSError):
        tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-lines:]
        return "\n".join(f"    {line[:200]}" for line in tail)
    return ""


def end_process_group(process: subprocess.Popen[bytes], *, grace: float, kill: bool = False) -> None:
    """Stop a process we started and its whole group, if it still runs: SIGTERM (`kill`: SIGKILL),
    then SIGKILL if it has not exited after `grace` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def isolated_env(*port_envs: str, **settings: str) -> dict[str, str]:
    """This process's environment for a platform beside any other on this machine (a
    benchmark's): its own broker and the services of `port_envs` on free ports, and `settings`."""
    env = {**os.environ, **settings, **{name: str(free_port()) for name in ("BILLING_KAFKA_PORT", *port_envs)}}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # its own broker, not the one the environment names
    return env


@dataclass
class Platform:
    """The running platform. `start()` brings everything up; `stop()` takes it all down."""

    state_dir: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    database_name: str = "billing"
    fresh_database: bool = False
    quiet: bool = False
    database_url: str = ""
    bootstrap: str = ""
    smtp_port: int = 0
    broker: TansuBroker | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _mail: subprocess.Popen[bytes] | None = None
    sandboxes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @classmethod
    def throwaway(cls, prefix: str, env: dict[str, str], *, quiet: bool) -> Platform:
        """A platform in a new state folder (`prefix`…, with its logs folder) and a database of its
        own, both removed by `discard()`: a benchmark's."""
        state = Path(tempfile.mkdtemp(prefix=prefix))
        (state / "logs").mkdir()
        return cls(state_dir=state, env=env, database_name=f"billing_bench_{uuid.uuid4().hex[:6]}", fresh_database=True, quiet=quiet)

    def __post_init__(self) -> None:
        # Also for the benchmarks, which start single services and migrations without `start()`.
        self._development_defaults()

    def say(self, message: str) -> None:
        if not self.quiet:
            log(message)

    @property
    def maildir(self) -> Path:
        return self.state_dir / "mail"

    def port(self, spec: ServiceSpec) -> int:
        return int(self.env.get(spec.port_env, spec.default_port))

    def url(self, name: str) -> str:
        spec = next(s for s in SERVICES if s.name == name)
        return f"http://127.0.0.1:{self.port(spec)}"

    def ports_wanted(self) -> list[tuple[int, str, str]]:
        """Every port this start would listen on: (port, what, the variable that moves it)."""
        wanted: list[tuple[int, str, str]] = []
        if not self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            wanted.append((int(self.env.get("BILLING_KAFKA_PORT", "19092")), "the embedded Kafka broker", "BILLING_KAFKA_PORT (or KAFKA_BOOTSTRAP_SERVERS)"))
        if not self.env.get("NOTIFY_SMTP_HOST"):
            wanted.append((int(self.env.get("BILLING_SMTP_PORT", "8025")), "the embedded SMTP server", "BILLING_SMTP_PORT (or NOTIFY_SMTP_HOST)"))
        for sandbox in SANDBOXES:
            if not self.env.get(sandbox.payments_env):
                port = int(self.env.get(sandbox.port_env, sandbox.default_port))
                wanted.append((port, f"the {sandbox.provider} sandbox", f"{sandbox.port_env} (or {sandbox.payments_env})"))
        wanted += [(self.port(spec), spec.name, spec.port_env) for spec in SERVICES]
        return wanted

    def check_ports(self) -> None:
        """Refuse to start anything when a port is taken (or named twice), naming the variable to change."""
        problems: list[str] = []
        seen: dict[int, str] = {}
        for port, what, variable in self.ports_wanted():
            if port in seen:
                problems.append(f"port {port} is wanted by both {seen[port]} and {what}: set {variable} to another port")
            elif not port_free(port):
                problems.append(f"port {port} ({what}) is in use: stop what listens there, or set {variable} to a free port")
            seen.setdefault(port, what)
        if problems:
            raise StartupRefused("nothing was started:\n  " + "\n  ".join(problems))

    def start(self) -> None:
        self.check_ports()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self._start_postgres()
        self._start_kafka()
        self._start_smtp()
        self._start_sandboxes()
        self.migrate()
        asyncio.run(ensure_topics(self.bootstrap))
        self.say(f"topics ready on {self.bootstrap}")
        for spec in SERVICES:
            self.start_service(spec.name)
        for spec in SERVICES:
            self.wait_ready(spec.name)

    def _development_defaults(self) -> None:
        """What only a development platform may use: a generated key for the secrets at rest, kept
        beside the data it seals (a production deployment sets SECRETS_KEYS, or its services refuse
        to start), and partner webhooks allowed to this machine (over http)."""
        if not self.env.get("SECRETS_KEYS"):
            self.env.setdefault("SECRETS_DEV_KEY_FILE", str((self.state_dir / "secrets-dev-key.json").resolve()))
        self.env.setdefault("NOTIFY_WEBHOOK_ALLOWED_DESTINATIONS", '["127.0.0.1/32", "localhost"]')
        # notify fetches every PDF it attaches through the document's shared link, from this machine:
        # invoicing's per-address limit on shared links would hold a month close's mail to 10/s.
        # A deployment lists notify's own addresses instead (deploy/README.md).
        self.env.setdefault("PUBLIC_RATE_LIMIT_EXEMPT", '["127.0.0.1/32", "::1/128"]')

    def _start_postgres(self) -> None:
        given = self.env.get("DATABASE_URL")
        if given:
            server = given
            self.say("PostgreSQL: using DATABASE_URL")
        else:
            server = start_embedded_postgres(self.state_dir / "pgdata")
            self.say(f"PostgreSQL: embedded, data in {self.state_dir / 'pgdata'}")
        # A fresh database is always one of our own, never the one DATABASE_URL names.
        self.database_url = given if given and not self.fresh_database else with_database(server, self.database_name)
        asyncio.run(ensure_database(self.database_url, fresh=self.fresh_database))

    def _start_kafka(self) -> None:
        given = self.env.get("KAFKA_BOOTSTRAP_SERVERS")
        if given:
            self.bootstrap = given
            self.say(f"Kafka: using {given}")
            return
        port = int(self.env.get("BILLING_KAFKA_PORT", "19092"))
        self.broker = TansuBroker(port, self.state_dir / "logs" / "tansu.log")
        self.broker.start()
        self.bootstrap = self.broker.bootstrap
        # Tansu has no InitProducerId: the idempotent producer must stay off against it.
        self.env["KAFKA_ENABLE_IDEMPOTENCE"] = "false"
        self.say(f"Kafka: embedded Tansu broker on {self.bootstrap}")

    def _start_smtp(self) -> None:
        if self.env.get("NOTIFY_SMTP_HOST"):
            self.say(f"SMTP: using {self.env['NOTIFY_SMTP_HOST']}")
            return
        self.smtp_port = int(self.env.get("BILLING_SMTP_PORT", "8025"))
        self._mail = start_mail_sink(self.maildir, self.smtp_port, self.state_dir / "logs" / "smtp.log")
        self.env["NOTIFY_SMTP_HOST"] = "127.0.0.1"
        self.env["NOTIFY_SMTP_PORT"] = str(self.smtp_port)
        self.say(f"SMTP: embedded server on 127.0.0.1:{self.smtp_port}, mail stored in {self.maildir}")

    def provider_url(self, provider: str) -> str:
        """Where payments reaches `provider`: its sandbox here, or what the environment names."""
        spec = next(s for s in SANDBOXES if s.provider == provider)
        return self.env[spec.payments_env]

    def _start_sandboxes(self) -> None:
        for spec in SANDBOXES:
            if self.env.get(spec.payments_env):
                self.say(f"{spec.provider}: using {self.env[spec.payments_env]}")
                continue
            port = int(self.env.get(spec.port_env, spec.default_port))
            out = (self.state_dir / "logs" / f"{spec.provider}-sandbox.log").open("ab")
            self._logs.append(out)
            self.sandboxes[spec.provider] = subprocess.Popen(
                [sys.executable, "-m", "provider_sandboxes", spec.provider, "--port", str(port)],
                env=dict(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.monotonic() + 30
            while not port_open("127.0.0.1", port):
                process = self.sandboxes[spec.provider]
                if process.poll() is not None or time.monotonic() > deadline:
                    raise StartupRefused(f"the {spec.provider} sandbox did not start; its log is {out.name}:\n{log_tail(Path(out.name))}")
                time.sleep(0.1)
            self.env[spec.payments_env] = f"http://127.0.0.1:{port}"
            self.say(f"{spec.provider}: sandbox on {self.env[spec.payments_env]} (webhooks go to payments)")

    def migrate(self, only: tuple[str, ...] | None = None) -> None:
        # Migrations that seal secrets read the keyring from the environment, as the services do.
        given = {k: v for k, v in self.env.items() if k.startswith("SECRETS_")}
        saved = {k: os.environ.get(k) for k in given}
        os.environ.update(given)
        try:
            for spec in SERVICES:
                if only is None or spec.name in only:
                    upgrade(migrations_dir(spec.package), self.database_url)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.say("migrations: every service at head")

    @property
    def api_keys(self) -> bool:
        """Whether the services verify API keys (else they trust `X-Tenant-Id`, as behind a gateway)."""
        return self.env.get("AUTH_MODE", "api_key") == "api_key"

    def service_env(self) -> dict[str, str]:
        env = dict(self.env)
        env["DATABASE_URL"] = self.database_url
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        # Invoicing's shared document links are absolute (a buyer can open them from the mail), and
        # notify fetches the documents it attaches from invoicing.
        env.setdefault("INVOICING_PUBLIC_BASE_URL", self.url("invoicing"))
        env.setdefault("NOTIFY_DOCUMENTS_BASE_URL", self.url("invoicing"))
        # The portal calls the services' public APIs and signs people in at its own public address.
        for name in ("invoicing", "rating", "dunning", "notify", "usage-ingest", "payments"):
            env.setdefault(f"PORTAL_{name.upper().replace('-', '_')}_URL", self.url(name))
        env.setdefault("PORTAL_PUBLIC_BASE_URL", self.url("portal"))
        env.setdefault("PORTAL_SECRET_KEY", self.portal_secret())
        return env

    def portal_secret(self) -> str:
        """The portal's secret key, kept in the state directory so sessions survive a restart."""
        path = self.state_dir / "portal-secret-key"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def start_service(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        """Start one service; `extra_env` for this process only (a demo freezing dunning's clock)."""
        spec = next(s for s in SERVICES if s.name == name)
        out = (self.state_dir / "logs" / f"{name}.log").open("ab")
        self._logs.append(out)
        self.processes[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                f"{spec.package}.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port(spec)),
                "--log-level",
                "warning",
                "--workers",
                self.env.get(spec.workers_env, "1"),
            ],
            env={**self.service_env(), **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def wait_ready(self, name: str, timeout: float = 90.0) -> None:
        """Wait until the process this platform started for `name` answers `/readyz` itself:
        an answer from whatever else listens on the port does not count."""
        spec = next(s for s in SERVICES if s.name == name)
        url = self.url(name) + "/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise StartupRefused(f"{name} exited with {process.returncode}; its log is {self.log_path(name)}:\n{log_tail(self.log_path(name))}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200 and listens_on(process.pid, self.port(spec)):
                    self.say(f"{name:<13} ready at {self.url(name)}")
                    return
            time.sleep(0.2)
        raise StartupRefused(f"{name} not ready after {timeout:.0f}s; its log is {self.log_path(name)}:\n{log_tail(self.log_path(name))}")

    def stop_service(self, name: str, *, kill: bool = False) -> None:
        """Stop a service (its whole process group: uvicorn workers included); `kill` is SIGKILL."""
        process = self.processes.pop(name, None)
        if process is not None:
            end_process_group(process, grace=15, kill=kill)

    def discard(self) -> None:
        """`stop`, then remove what a throwaway platform (a benchmark's, `fresh_database`) made,
        however far its start got: its database on the server `DATABASE_URL` names, or the embedded
        server (stopped first) whose data is in the state folder; and the state folder itself."""
        try:
            self.stop()
        finally:
            if self.fresh_database:
                pgdata = self.state_dir / "pgdata"
                if self.env.get("DATABASE_URL"):
                    if self.database_url:
                        asyncio.run(drop_database(self.database_url))
                elif pgdata.exists():
                    stop_embedded_postgres(pgdata)
                shutil.rmtree(self.state_dir, ignore_errors=True)

    def stop(self) -> None:
        for name in list(self.processes):
            self.stop_service(name)
        if self.broker is not None:
            self.broker.stop()
        for provider, process in self.sandboxes.items():
            # What we started goes with us: a later start() starts its own again.
            self.env.pop(next(s for s in SANDBOXES if s.provider == provider).payments_env, None)
            end_process_group(process, grace=10)
        self.sandboxes.clear()
        if self._mail is not None and self._mail.poll() is None:
            self._mail.terminate()
            self._mail.wait(10)
        for f in self._logs:
            f.close()
        self._logs.clear()
