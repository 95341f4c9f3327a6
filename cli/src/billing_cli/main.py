"""`billing`: run the platform on embedded servers, run the demo, and operator tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, cast

import click
import typer

from billing_cli.errors import BUG, STARTUP, TARGETS, explain, safe_url
from billing_cli.platform import SERVICES, Platform, StartupRefused, log

app = typer.Typer(
    help="The billing platform: `billing up` runs it, `billing demo` shows it working. Exit codes: 0 done, 1 a problem found, "
    "2 a wrong command line, 3 the broker, database or a service unreachable, 4 start-up refused (a port taken, a process died), 70 a bug.",
    no_args_is_help=True,
)
outbox_app = typer.Typer(help="Outbox operations.")
app.add_typer(outbox_app, name="outbox")
keys_app = typer.Typer(
    help="API keys: issue, revoke, list. The key table (`billing_auth.api_key` on DATABASE_URL) is the source of truth; "
    "`billing.auth` announces each change to the running services.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
secrets_app = typer.Typer(help="Secrets at rest (provider credentials, webhook signing secrets), sealed with the keys in SECRETS_KEYS.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")

Bootstrap = Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka bootstrap servers.")]
DatabaseUrl = Annotated[str, typer.Option(envvar="DATABASE_URL", help="The platform's PostgreSQL (the key table lives there).")]
StateDir = Annotated[Path, typer.Option(envvar="BILLING_STATE_DIR", help="Where the embedded servers keep their state.")]


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error (else one or two lines saying what to do).")] = False,
) -> None:
    """Options for every command."""


def main() -> None:
    """The `billing` command: errors in a line or two with what to do next, a traceback only with `--debug`."""
    argv = sys.argv[1:]
    debug = "--debug" in argv or os.environ.get("BILLING_DEBUG") == "1"
    args = [a for a in argv if a != "--debug"]
    command = next((a for a in args if not a.startswith("-")), "")
    TARGETS.kafka, TARGETS.database, TARGETS.http = None, None, []
    # The libraries' own log lines (aiokafka's "Unable connect to …", retries) only with --debug.
    logging.basicConfig(level=logging.INFO if debug else logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = typer.main.get_command(app).main(args=args, prog_name="billing", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.exit(130)
    except StartupRefused as exc:
        if debug:
            raise
        print(f"billing {command}: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(STARTUP)
    except SystemExit:
        raise
    except Exception as exc:
        if debug:
            raise
        code, message = explain(exc, command)
        print(message, file=sys.stderr, flush=True)
        sys.exit(code or BUG)
    sys.exit(result if isinstance(result, int) else 0)


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


@app.command()
def up(state_dir: StateDir = Path(".billing/up")) -> None:
    """Start PostgreSQL, the broker, SMTP, the provider sandboxes and the six services; Ctrl-C stops everything."""
    platform = Platform(state_dir=state_dir)
    TARGETS.database = platform.env.get("DATABASE_URL")
    try:
        platform.start()
        log("\nThe platform is running:")
        for spec in SERVICES:
            log(f"  {spec.name:<13} {platform.url(spec.name)}   (API docs: {platform.url(spec.name)}/docs)")
        for provider in platform.sandboxes:
            log(f"  {provider + ' sandbox':<17} {platform.provider_url(provider)}")
        log(f"  mail folder   {platform.maildir}")
        log(f"  database      {safe_url(platform.database_url)}   (DATABASE_URL for `billing lag`, `billing keys`)")
        log(f"  Kafka         {platform.bootstrap}\nPress Ctrl-C to stop.")
        _wait_for_ctrl_c()
    finally:
        log("stopping…")
        platform.stop()


@app.command()
def demo(
    state_dir: StateDir = Path(".billing/demo"),
    keep: Annotated[bool, typer.Option("--keep", help="Keep the platform running after the demo (Ctrl-C stops it), to open the portal links.")] = False,
) -> None:
    """Start the platform from scratch, bill a scripted month for two partners, check everything
    arrived, print a summary and the portal's sign-in links. Exits 0 only if every expected
    invoice, payment and email arrived."""
    from billing_cli.demo import run_demo

    shutil.rmtree(state_dir, ignore_errors=True)
    platform = Platform(state_dir=state_dir, database_name="billing_demo", fresh_database=True)
    platform.env["AUTH_MODE"] = "api_key"  # the partners call with their own API keys
    try:
        platform.start()
        ok = run_demo(platform)
        if ok and keep:
            print("the platform keeps running for the portal links; Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        elif ok:
            print("(the platform stops now: `billing demo --keep` keeps it running so the links work)", flush=True)
    finally:
        platform.stop()
    raise typer.Exit(0 if ok else 1)


def _database_url() -> str:
    """DATABASE_URL, which the command needs (and names when the database cannot be reached)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise typer.BadParameter("set DATABASE_URL")
    TARGETS.database = url
    return url


@app.command()
def migrate() -> None:
    """Bring every service's schema to head on DATABASE_URL."""
    from billing_runtime.migrations import migrations_dir, upgrade

    url = _database_url()
    for spec in SERVICES:
        upgrade(migrations_dir(spec.package), url)
        log(f"{spec.name}: at head")

    async def key_table() -> None:
        from billing_runtime.auth import ensure_registry
        from billing_runtime.db import create_engine

        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await ensure_registry(conn)
        finally:
            await engine.dispose()

    asyncio.run(key_table())
    log("API key table (billing_auth.api_key): there")


@app.command()
def topics() -> None:
    """Create every topic at its final partition count on KAFKA_BOOTSTRAP_SERVERS."""
    from billing_runtime.kafka import ensure_topics

    TARGETS.kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    created = asyncio.run(ensure_topics(TARGETS.kafka))
    log("created: " + (", ".join(created) or "nothing (all there)"))


@outbox_app.command("republish")
def republish(
    service: Annotated[str, typer.Option(help="Service whose outbox to republish, or `all`.")],
    since: Annotated[datetime, typer.Option(help="Start of the range (inclusive), ISO 8601 with zone.")],
    until: Annotated[datetime, typer.Option(help="End of the range (exclusive).")] = datetime.max,
) -> None:
    """Publish again the outbox rows created in a time range (to heal a lost topic).
    Consumers drop what they already applied."""
    import importlib

    from billing_runtime.db import create_engine
    from billing_runtime.outbox import republish as do_republish

    url = _database_url()
    names = [s for s in SERVICES if service in ("all", s.name)]
    if not names:
        raise typer.BadParameter(f"unknown service {service!r}")
    if until == datetime.max:
        until = datetime(9999, 1, 1, tzinfo=since.tzinfo)

    async def run() -> None:
        engine = create_engine(url)
        try:
            for spec in names:
                db = importlib.import_module(f"{spec.package}.db")
                count = await do_republish(engine, db.outbox, since, until)
                log(f"{spec.name}: {count} events marked for republishing")
        finally:
            await engine.dispose()

    asyncio.run(run())


@keys_app.command("issue")
def keys_issue(
    tenant: Annotated[str, typer.Option(help="The partner the key acts for, or `distributor`.")],
    scope: Annotated[str, typer.Option(help="read, write or admin (each includes the ones before).")] = "read",
    label: Annotated[str | None, typer.Option(help="What the key is for (shown in `keys list`).")] = None,
    database_url: DatabaseUrl = "",
    bootstrap: Bootstrap = "127.0.0.1:19092",
) -> None:
    """Issue an API key. It is printed once, here; only its hash is kept (in the key table)."""
    from billing_cli.ops import issue_key
    from billing_runtime.auth import Scope

    if scope not in ("read", "write", "admin"):
        raise typer.BadParameter("scope must be read, write or admin")
    if not database_url:
        raise typer.BadParameter("set DATABASE_URL (or --database-url): the key table is there")
    TARGETS.database, TARGETS.kafka = database_url, bootstrap
    try:
        key = issue_key(bootstrap, database_url, tenant, cast(Scope, scope), label)  # one of the three, checked above
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    log(f"issued {key.key_id} for {tenant} with scope {scope}. The key (shown once, store it now):")
    log(key.key)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (`k...`), as `keys list` shows it.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the key table).")] = None,
    database_url: DatabaseUrl = "",
    bootstrap: Bootstrap = "127.0.0.1:19092",
) -> None:
    """Revoke a key: every service refuses it as soon as it reads the revocation (on the topic at
    once, from the key table within API_KEYS_REFRESH_SECONDS)."""
    from billing_cli.ops import revoke_key

    if not database_url:
        raise typer.BadParameter("set DATABASE_URL (or --database-url): the key table is there")
    TARGETS.database, TARGETS.kafka = database_url, bootstrap
    try:
        known = revoke_key(bootstrap, database_url, key_id, reason)
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from exc
    log(f"revoked {key_id} ({known.tenant}, {known.scope})")


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = "") -> None:
    """Every key ever issued (from the key table): id, tenant, scope, label, issued, revoked."""
    from billing_cli.ops import list_keys

    if not database_url:
        raise typer.BadParameter("set DATABASE_URL (or --database-url): the key table is there")
    TARGETS.database = database_url
    log(f"{'key id':<18} {'tenant':<20} {'scope':<6} {'issued':<20} {'revoked':<20} label")
    for k in list_keys(database_url):
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
        log(f"{k.key_id:<18} {k.tenant:<20} {k.scope:<6} {k.issued_at.isoformat(timespec='seconds'):<20} {revoked:<20} {k.label or ''}")


@secrets_app.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key for SECRETS_KEYS (base64 of 32 bytes)."""
    from billing_runtime.crypto import new_key

    log(new_key())


@secrets_app.command("rotate")
def secrets_rotate(database_url: DatabaseUrl = "") -> None:
    """Seal again, with SECRETS_CURRENT_KEY, every secret sealed with an older key of SECRETS_KEYS
    (payments' provider credentials, notify's webhook secrets). Run after adding a new current key;
    drop the old key from SECRETS_KEYS only afterwards."""
    if not database_url:
        raise typer.BadParameter("set DATABASE_URL (or --database-url)")
    from billing_runtime.crypto import Keyring
    from billing_runtime.db import create_engine
    from notify.webhook.repository import reseal_all as reseal_notify
    from payments.providers.repository import reseal_all as reseal_payments

    keyring = Keyring.from_env()

    async def run() -> dict[str, int]:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                return {"payments.provider_account": await reseal_payments(conn, keyring), "notify.webhook_endpoint": await reseal_notify(conn, keyring)}
        finally:
            await engine.dispose()

    for table, count in asyncio.run(run()).items():
        log(f"{table}: {count} rows sealed again with key {keyring.current}")


@app.command("bill-run")
def bill_run(
    seller: Annotated[str, typer.Argument(help="The seller (a partner, or `distributor`) whose period to close.")],
    period: Annotated[str, typer.Argument(help="The month, YYYY-MM.")],
    api_key: Annotated[str | None, typer.Option(envvar="BILLING_API_KEY", help="A write key of SELLER.")] = None,
    rating_url: Annotated[str, typer.Option(envvar="BILLING_RATING_URL")] = "http://127.0.0.1:8102",
    invoicing_url: Annotated[str, typer.Option(envvar="BILLING_INVOICING_URL")] = "http://127.0.0.1:8103",
    bootstrap: Bootstrap = "127.0.0.1:19092",
    database_url: DatabaseUrl = "",
) -> None:
    """Close SELLER's PERIOD (a bill run; running it again changes nothing) and show a progress bar
    until invoicing has issued every buyer's invoice."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from billing_cli.ops import auth_headers, key_tenant
    from billing_cli.ops import bill_run as run_bill_run

    TARGETS.kafka, TARGETS.database, TARGETS.http = bootstrap, database_url or None, [rating_url, invoicing_url]
    if api_key is not None and key_tenant(bootstrap, api_key, database_url or None) != seller:
        raise typer.BadParameter(f"the API key is not a key of {seller}")
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task(f"{seller} {period}: invoices issued", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, 1) if total else 0)

        try:
            run, issued = run_bill_run(rating_url, invoicing_url, seller, period, auth_headers(seller, api_key), progress)
        except (RuntimeError, TimeoutError) as exc:
            log(str(exc))
            raise typer.Exit(1) from exc
    state = "started" if run["created"] else "already run"
    log(f"bill run {run['bill_run_id']} ({state}): {run['buyers']} buyers, {run['lines']} lines, {issued} invoices; {len(run['unrated'])} unrated")


@app.command()
def lag(
    database_url: DatabaseUrl = "",
    bootstrap: Bootstrap = "127.0.0.1:19092",
    broker: Annotated[bool, typer.Option("--broker", help="Also show the broker's committed and end offsets per group and partition.")] = False,
) -> None:
    """Consumer lag per service and topic: events the outboxes published that the consumer's inbox
    has not applied yet (counted in PostgreSQL, so right on any broker)."""
    from billing_cli.ops import consumer_lag, platform_lag

    if not database_url:
        raise typer.BadParameter("set DATABASE_URL (or --database-url): lag is counted from the outboxes and inboxes there")
    TARGETS.database, TARGETS.kafka = database_url, bootstrap
    rows = asyncio.run(platform_lag(database_url, bootstrap))
    log(f"{'service':<13} {'topic':<24} {'published':>10} {'applied':>10} {'lag':>8}")
    for r in rows:
        log(f"{r.service:<13} {r.topic:<24} {r.published:>10} {r.applied:>10} {r.lag:>8}")
    log(f"total lag: {sum(r.lag for r in rows)} events")
    if broker:
        log("\nas the broker reports it (the embedded Tansu's end offsets are wrong):")
        log(f"{'group':<14} {'topic':<24} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8}")
        for b in asyncio.run(consumer_lag(bootstrap)):
            log(f"{b.group:<14} {b.topic:<24} {b.partition:>4} {b.committed:>10} {b.end:>10} {b.lag:>8}")


@app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option(help="Show the last N.")] = 50,
    bootstrap: Bootstrap = "127.0.0.1:19092",
) -> None:
    """The events consumers gave up on (`billing.deadletter`), with where they came from and why."""
    from billing_cli.ops import dead_letters as read_dead_letters

    TARGETS.kafka = bootstrap
    rows = asyncio.run(read_dead_letters(bootstrap, limit))
    for r in rows:
        log(f"{r['at']}  {r['service']:<13} {r['from']:<28} {r['type'] or '(no type)'} {r['id']}  {r['code'] or '(no code)'}\n    {r['error'][:300]}")
    log(f"{len(rows)} dead letters")


if __name__ == "__main__":
    main()
