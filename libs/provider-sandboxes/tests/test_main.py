"""`python -m provider_sandboxes` serves a sandbox in the foreground (the embedded mode)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import stripe

from provider_sandboxes.common import free_port


def test_module_serves_the_stripe_sandbox() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "provider_sandboxes", "stripe", "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_sandbox/deliveries")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "the sandbox did not start"
                time.sleep(0.1)
        sc = stripe.StripeClient("sk_test_cli", base_addresses={"api": f"http://127.0.0.1:{port}"}, max_network_retries=0)
        assert sc.v1.customers.create({"email": "x@example.com"}).id.startswith("cus_")
    finally:
        process.terminate()
        process.wait(timeout=10)
