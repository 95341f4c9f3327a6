"""What both sandboxes share: ids, injected faults, webhook delivery, and a server that runs an
app on a real port in a thread of its own (tests) or in the foreground (`python -m`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import string
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 14) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


FaultMode = Literal[
    "error_before",
    "error_after_commit",
    "delay_after_commit",
    "delay_before_commit",
    "drop_webhook",
    "duplicate_webhook",
    "reorder_webhooks",
]
WEBHOOK_FAULTS = {"drop_webhook", "duplicate_webhook", "reorder_webhooks"}


@dataclass
class Fault:
    """A failure injected into the next `times` matching requests or webhooks.

    Requests (matched by `method` and `path_prefix`): `error_before` answers 500 without doing
    anything; `error_after_commit` does the work (charge, create) and then answers 500, as a
    provider whose response was lost; `delay_after_commit` does the work, then waits `seconds`
    before answering, so a client with a shorter timeout gives up; `delay_before_commit` (Stripe
    mutations) waits `seconds` and only then does the work: a request still in flight, which a
    repeat under the same idempotency key meets as a 409 `idempotency_error`, as at Stripe.

    Webhooks (matched by `event_type`, a prefix of Stripe's `type` or of GoCardless's
    `resource_type.action`; empty matches every event): `drop_webhook` never delivers it;
    `duplicate_webhook` delivers it twice at once; `reorder_webhooks` holds the next `times`
    matching events and delivers them in reverse order, once all are held or `seconds` (default
    2) after the first.
    """

    mode: FaultMode
    method: str = ""
    path_prefix: str = ""
    seconds: float = 0.0
    times: int = 1
    event_type: str = ""
    # Set from the Authorization header of `POST /_sandbox/faults`: the fault then touches only
    # that account's requests and webhooks (each test its own), else every account's.
    account: str | None = field(default=None, init=False)
    held: list[tuple[str, bytes, dict[str, str], list[str]]] = field(default_factory=list, init=False, repr=False)
    released: bool = field(default=False, init=False, repr=False)


@dataclass
class Delivery:
    url: str
    event_ids: list[str]
    status: int | None
    attempts: int
    fault: str | None = None


@dataclass
class Sandbox:
    """State shared by both provider sandboxes."""

    faults: list[Fault] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    webhook_retries: int = 3
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def take_fault(self, request: Request) -> Fault | None:
        for fault in self.faults:
            if fault.mode in WEBHOOK_FAULTS:
                continue
            if fault.account not in (None, bearer(request)):
                continue
            if fault.method == request.method and request.url.path.startswith(fault.path_prefix):
                return self._taken(fault)
        return None

    def _taken(self, fault: Fault) -> Fault:
        fault.times -= 1
        if fault.times <= 0:
            self.faults.remove(fault)
        return fault

    async def add_fault(self, request: Request) -> Response:
        body = await request.json()
        try:
            fault = Fault(**body)
        except TypeError as exc:
            return JSONResponse({"error": f"not a fault: {exc}"}, status_code=400)
        if fault.mode not in WEBHOOK_FAULTS and not fault.method:
            return JSONResponse({"error": "a request fault needs method and path_prefix"}, status_code=400)
        fault.account = bearer(request)
        self.faults.append(fault)
        return JSONResponse({"faults": len(self.faults)}, status_code=201)

    async def clear_faults(self, request: Request) -> Response:
        """Clear the faults of the account named by the Authorization header, or all of them."""
        account = bearer(request)
        self.faults[:] = [f for f in self.faults if account is not None and f.account != account]
        return Response(status_code=204)

    async def list_deliveries(self, request: Request) -> Response:
        return JSONResponse([d.__dict__ for d in self.deliveries])

    def send_webhook(self, url: str, body: bytes, headers: dict[str, str], event_ids: list[str], event_type: str = "", account: str | None = None) -> None:
        """Deliver in the background, retrying a few times as the providers do (with short
        pauses here, so tests do not wait), unless a webhook fault of this account says otherwise."""
        fault = next((f for f in self.faults if f.mode in WEBHOOK_FAULTS and f.account in (None, account) and event_type.startswith(f.event_type)), None)
        if fault is None:
            self._spawn(self._deliver(url, body, headers, event_ids))
            return
        self._taken(fault)
        if fault.mode == "drop_webhook":
            self.deliveries.append(Delivery(url, event_ids, None, 0, fault.mode))
        elif fault.mode == "duplicate_webhook":
            for _ in range(2):
                self._spawn(self._deliver(url, body, headers, event_ids, fault.mode))
        else:
            fault.held.append((url, body, headers, event_ids))
            if fault.times <= 0:
                self._spawn(self._release(fault))
            elif len(fault.held) == 1:
                asyncio.get_running_loop().call_later(fault.seconds or 2.0, lambda: self._spawn(self._release(fault)))

    async def _release(self, fault: Fault) -> None:
        """Deliver what a `reorder_webhooks` fault held, newest first, one after the other."""
        if fault.released:
            return
        fault.released = True
        if fault in self.faults:
            self.faults.remove(fault)
        for url, body, headers, event_ids in reversed(fault.held):
            await self._deliver(url, body, headers, event_ids, fault.mode)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: bytes, headers: dict[str, str], event_ids: list[str], fault: str | None = None) -> None:
        delivery = Delivery(url, event_ids, None, 0, fault)
        self.deliveries.append(delivery)
        async with httpx.AsyncClient(timeout=30.0) as client:
            for attempt in range(1, self.webhook_retries + 1):
                delivery.attempts = attempt
                try:
                    response = await client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
                    delivery.status = response.status_code
                    if response.status_code < 300:
                        return
                except httpx.HTTPError as exc:
                    log.info("webhook to %s failed: %s", url, exc)
                await asyncio.sleep(0.2 * attempt)


async def apply_fault_after(fault: Fault | None, response: Response, error: dict[str, Any]) -> Response:
    """The response a client sees once the work is committed, given the fault drawn for it."""
    if fault is None or fault.mode not in {"error_after_commit", "delay_after_commit"}:
        return response
    if fault.mode == "delay_after_commit":
        await asyncio.sleep(fault.seconds)
        return response
    return JSONResponse(error, status_code=500)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SandboxServer:
    """Serve an app on 127.0.0.1 in a daemon thread with its own event loop, so that both
    synchronous SDKs (requests) and asynchronous ones can reach it from a test."""

    def __init__(self, app: Starlette, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, name=f"sandbox-{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextlib.contextmanager
def running(app: Starlette, port: int | None = None) -> Iterator[SandboxServer]:
    server = SandboxServer(app, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and len(header) > 7:
        return header[7:].strip()
    return None


def fingerprint(method: str, path: str, params: Any) -> str:
    return f"{method} {path} {params!r}"
