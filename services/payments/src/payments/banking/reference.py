"""ISO 11649 structured creditor references (RF), one per invoice, quoted by the buyer on a transfer.
The reference itself is computed in billing_events.references, where invoicing prints it from."""

from __future__ import annotations

import re

from stdnum import iso11649
from stdnum.exceptions import ValidationError

from billing_events.references import creditor_reference

__all__ = ["creditor_reference", "references_in"]

_START = re.compile(r"RF\s?\d{2}")


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
