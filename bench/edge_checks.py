"""What the edge checks cost on a request body: the time to scan a usage batch for what no service
can take (`billing_runtime.edge.check_json`) against the `json.loads` the endpoint does anyway,
for an ordinary batch (scanned, not parsed) and one that must be parsed (a value that could be a
NUL escape), and the size refused early with 413 (10 MB, as in issue 12) against parsing it.

    .venv/bin/python bench/edge_checks.py [--records 1000] [--rounds 50] [--json]

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable

from billing_runtime.edge import InvalidInput, check_json


def batch(n: int, suspicious: bool) -> bytes:
    rows = [
        {
            "id": str(uuid.uuid4()),
            "customer_id": f"cust-{i % 50}",
            "product_code": "AZ-VM-D2",
            "quantity": 1.25 + i,
            "timestamp": "2026-10-12T10:00:00Z",
            "note": "Infinity Ltd" if suspicious and i == n - 1 else "ok",
        }
        for i in range(n)
    ]
    return json.dumps({"records": rows}).encode()


def per_call(fn: Callable[[], object], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args()
    limits = {"max_integer_digits": 15, "max_significant_digits": 28}
    plain, suspect = batch(args.records, False), batch(args.records, True)
    huge = json.dumps({"records": [{"name": "x" * 1000}] * 10_000}).encode()

    def refuse_huge() -> None:
        if len(huge) > 1_000_000:  # what the middleware does with Content-Length
            return

    result = {
        "records": args.records,
        "body_bytes": len(plain),
        "json_loads_ms": round(per_call(lambda: json.loads(plain), args.rounds), 3),
        "check_plain_ms": round(per_call(lambda: check_json(plain, **limits), args.rounds), 3),
        "check_full_parse_ms": round(per_call(lambda: check_json(suspect, **limits), args.rounds), 3),
        "parse_10mb_ms": round(per_call(lambda: json.loads(huge), max(1, args.rounds // 10)), 3),
        "refuse_10mb_ms": round(per_call(refuse_huge, args.rounds), 6),
    }
    try:
        check_json(suspect.replace(b"Infinity Ltd", b"a\\u0000"), **limits)
    except InvalidInput as refused:
        result["refused_code"] = refused.code
    if not args.json:
        for name, value in result.items():
            print(f"{name:>22}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
