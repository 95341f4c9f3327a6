"""ISO 11649 structured creditor references (RF), one per invoice, quoted by the buyer on a transfer."""

from __future__ import annotations

import re

from stdnum import iso11649
from stdnum.exceptions import ValidationError

_START = re.compile(r"RF\s?\d{2}")


def _base10(text: str) -> int:
    return int("".join(str(int(c, 36)) for c in text))


def creditor_reference(invoice_number: str) -> str:
    """`RF` + two check digits + the invoice number's letters and digits (at most 21), e.g.
    NW-2026-0007 → RF50NW20260007. Invoice numbers are unique per seller, so is the reference."""
    body = re.sub(r"[^A-Z0-9]", "", invoice_number.upper())[-21:] or "0"
    check = 98 - _base10(body + "RF00") % 97  # ISO 7064 MOD 97-10 over body + "RF00"
    return f"RF{check:02d}{body}"


def references_in(text: str | None) -> list[str]:
    """The valid RF references written in a remittance text (spaces allowed, as printed)."""
    found = []
    upper = (text or "").upper()
    for start in _START.finditer(upper):
        compact = re.sub(r"[^A-Z0-9]", "", upper[start.start() : start.start() + 40].replace(" ", ""))[:25]
        # The match may run into the next word: the longest prefix that validates is the reference.
        for end in range(len(compact), 4, -1):
            try:
                found.append(iso11649.validate(compact[:end]))
                break
            except ValidationError:
                continue
    return found
