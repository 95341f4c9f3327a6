"""API models of bank accounts named in refund files."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=70)]


class BankAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    iban: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=42)]
    bic: Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=11)] | None = None


class BankAccountOut(BaseModel):
    owner: str
    name: str
    iban: str
    bic: str | None
