"""comparison reports ahead of the invoice (seed 001: the first business day after the period):
`basis` (invoice, or rated_charges before the bill run), `invoice_expected_on`, and no foreign key
to the invoice (a report sent ahead names the id its invoice will have); the seller profile as the
one place of a seller's bank account: `bank_account_name` (BT-85), and every stored profile's
account announced once (SellerPaymentAccountChanged) so that notify's emails show it

Revision ID: docs_notice_0014
Revises: 0013
Create Date: 2026-12-01 19:55:00
"""
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from billing_events import to_kafka

revision: str = "docs_notice_0014"
down_revision: str | None = "docs_pay_0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_comparison_report_invoice_id_invoice", "comparison_report", schema="invoicing", type_="foreignkey")
    op.add_column("comparison_report", sa.Column("basis", sa.String(), nullable=False, server_default="invoice"), schema="invoicing")
    op.add_column("comparison_report", sa.Column("invoice_expected_on", sa.Date(), nullable=True), schema="invoicing")
    op.add_column("seller_settings", sa.Column("bank_account_name", sa.String(), nullable=True), schema="invoicing")
    # The same event put_seller writes (its id derived from the seller and the row's updated_at, so
    # running this again, or a PUT of the same row, adds nothing): notify learns the accounts kept here.
    from invoicing.seller.service import payment_account_changed

    bind = op.get_bind()
    insert = sa.text(
        "INSERT INTO invoicing.outbox (event_id, event_type, topic, key, headers, value)"
        " VALUES (:event_id, :event_type, :topic, :key, CAST(:headers AS jsonb), :value) ON CONFLICT (event_id) DO NOTHING"
    )
    for row in bind.execute(sa.text("SELECT * FROM invoicing.seller_settings WHERE iban IS NOT NULL ORDER BY seller_id")).all():
        message = to_kafka(event := payment_account_changed(row, "invoicing", derived=True))
        headers = json.dumps([[name, value.decode()] for name, value in message.headers])
        bind.execute(
            insert,
            {"event_id": event.id, "event_type": event.type, "topic": message.topic, "key": message.key, "headers": headers, "value": message.value},
        )


def downgrade() -> None:
    op.drop_column("seller_settings", "bank_account_name", schema="invoicing")
    op.drop_column("comparison_report", "invoice_expected_on", schema="invoicing")
    op.drop_column("comparison_report", "basis", schema="invoicing")
    op.execute("DELETE FROM invoicing.comparison_report r WHERE NOT EXISTS (SELECT 1 FROM invoicing.invoice i WHERE i.invoice_id = r.invoice_id)")
    op.create_foreign_key(
        "fk_comparison_report_invoice_id_invoice", "comparison_report", "invoice", ["invoice_id"], ["invoice_id"], source_schema="invoicing", referent_schema="invoicing"
    )
