"""ISO 11649 structured creditor references (RF): one per invoice, computed from its number, so
that invoicing prints the same reference that payments matches bank transfers by."""

from __future__ import annotations

import re


def _base10(text: str) -> int:
    return int("".join(str(int(c, 36)) for c in text))


def creditor_reference(invoice_number: str) -> str:
    """`RF` + two check digits + the invoice number's letters and digits (at most 21), e.g.
    NW-2026-0007 → RF45NW20260007. Invoice numbers are unique per seller, so is the reference."""
    body = re.sub(r"[^A-Z0-9]", "", invoice_number.upper())[-21:] or "0"
    check = 98 - _base10(body + "RF00") % 97  # ISO 7064 MOD 97-10 over body + "RF00"
    return f"RF{check:02d}{body}"


def printed(reference: str) -> str:
    """The reference in groups of four, as ISO 11649 prints it (RF45 NW20 2600 07)."""
    return " ".join(reference[i : i + 4] for i in range(0, len(reference), 4))
