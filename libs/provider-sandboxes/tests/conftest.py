from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from provider_sandboxes import running


@dataclass
class Receiver:
    """A real HTTP endpoint that keeps every webhook it is sent (raw body and headers)."""

    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append((body, dict(request.headers)))
        return Response(status_code=204)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[bytes, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} webhooks of {count}")
            time.sleep(0.02)
        return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with running(Starlette(routes=[Route("/hook", rec.hook, methods=["POST"])])) as server:
        rec.url = f"{server.url}/hook"
        yield rec
