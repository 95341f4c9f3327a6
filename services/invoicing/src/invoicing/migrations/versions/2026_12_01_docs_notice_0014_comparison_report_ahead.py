"""comparison reports ahead of the invoice (seed 001: the first business day after the period):
`basis` (invoice, or rated_charges before the bill run), `invoice_expected_on`, and no foreign key
to the invoice (a report sent ahead names the id its invoice will have)

Revision ID: docs_notice_0014
Revises: 0013
Create Date: 2026-12-01 19:55:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "docs_notice_0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_comparison_report_invoice_id_invoice", "comparison_report", schema="invoicing", type_="foreignkey")
    op.add_column("comparison_report", sa.Column("basis", sa.String(), nullable=False, server_default="invoice"), schema="invoicing")
    op.add_column("comparison_report", sa.Column("invoice_expected_on", sa.Date(), nullable=True), schema="invoicing")


def downgrade() -> None:
    op.drop_column("comparison_report", "invoice_expected_on", schema="invoicing")
    op.drop_column("comparison_report", "basis", schema="invoicing")
    op.execute("DELETE FROM invoicing.comparison_report r WHERE NOT EXISTS (SELECT 1 FROM invoicing.invoice i WHERE i.invoice_id = r.invoice_id)")
    op.create_foreign_key(
        "fk_comparison_report_invoice_id_invoice", "comparison_report", "invoice", ["invoice_id"], ["invoice_id"], source_schema="invoicing", referent_schema="invoicing"
    )
