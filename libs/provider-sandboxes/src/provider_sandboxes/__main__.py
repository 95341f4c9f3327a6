"""`python -m provider_sandboxes stripe|gocardless --port N`: a sandbox in the foreground."""

from __future__ import annotations

import argparse

import uvicorn

from provider_sandboxes.gocardless import GoCardlessSandbox
from provider_sandboxes.stripe import StripeSandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m provider_sandboxes", description=__doc__)
    parser.add_argument("provider", choices=["stripe", "gocardless"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sandbox = StripeSandbox() if args.provider == "stripe" else GoCardlessSandbox()
    uvicorn.run(sandbox.app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
