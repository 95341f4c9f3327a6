"""SEPA credit transfer initiation (pain.001.001.03) for a refund of a bank transfer, with sepaxml
(XSD-checked on export). The seller uploads the file to its bank; its account is the debtor."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sepaxml import SepaTransfer

from billing_events.money import to_minor


@dataclass(frozen=True)
class Account:
    name: str
    iban: str
    bic: str | None


@dataclass(frozen=True)
class RefundFileContent:
    message_id: str
    end_to_end_id: str
    content: bytes


def end_to_end_id(refund_id: str) -> str:
    """At most 35 characters (ISO 20022 Max35Text), the same for the same refund."""
    return "RFND" + hashlib.sha256(refund_id.encode()).hexdigest()[:31].upper()


def refund_file(debtor: Account, creditor: Account, amount: Decimal, currency: str, execute_on: date, refund_id: str, remittance: str) -> RefundFileContent:
    """One credit transfer of `amount` from the seller (`debtor`) to the buyer (`creditor`)."""
    config: dict[str, Any] = {"name": debtor.name, "IBAN": debtor.iban, "batch": False, "currency": currency}
    if debtor.bic:
        config["BIC"] = debtor.bic
    transfer = SepaTransfer(config, clean=True)
    payment: dict[str, Any] = {
        "name": creditor.name,
        "IBAN": creditor.iban,
        "amount": to_minor(amount, currency),  # sepaxml takes cents
        "execution_date": execute_on,
        "description": remittance[:140],
        "endtoend_id": end_to_end_id(refund_id),
    }
    if creditor.bic:
        payment["BIC"] = creditor.bic
    transfer.add_payment(payment)
    return RefundFileContent(transfer.msg_id, payment["endtoend_id"], transfer.export(validate=True))
