"""Bank account fields of request bodies: an IBAN and a BIC, checked offline (python-stdnum:
country format and check digits) and kept in their compact form (no spaces, upper case)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError


def _iban(value: str) -> str:
    try:
        return str(stdnum_iban.validate(value))
    except ValidationError as exc:
        raise ValueError(f"not a valid IBAN: {exc}") from None


def _bic(value: str) -> str:
    try:
        return str(stdnum_bic.validate(value))
    except ValidationError as exc:
        raise ValueError(f"not a valid BIC: {exc}") from None


Iban = Annotated[str, StringConstraints(max_length=42), AfterValidator(_iban)]
Bic = Annotated[str, StringConstraints(max_length=11), AfterValidator(_bic)]
