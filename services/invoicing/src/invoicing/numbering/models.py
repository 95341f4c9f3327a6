"""One counter row per seller and series: the last sequence number it issued."""

from __future__ import annotations

from sqlmodel import Field

from invoicing.db import Base


class InvoiceNumberCounter(Base, table=True):
    __tablename__ = "invoice_number_counter"

    seller_id: str = Field(primary_key=True)
    last_seq: int = Field(default=0)


class CreditNoteNumberCounter(Base, table=True):
    """Credit notes have their own gapless series per seller (`{prefix}-CN-000001`)."""

    __tablename__ = "credit_note_number_counter"

    seller_id: str = Field(primary_key=True)
    last_seq: int = Field(default=0)
