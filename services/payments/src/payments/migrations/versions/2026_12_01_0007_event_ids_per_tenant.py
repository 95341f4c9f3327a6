"""provider events unique per (tenant, provider, event id), not per (provider, event id)

Revision ID: 0007_event_ids_per_tenant
Revises: 0006
Create Date: 2026-12-01 13:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0007_event_ids_per_tenant"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("pk_provider_event", "provider_event", schema="payments", type_="primary")
    op.create_primary_key("pk_provider_event", "provider_event", ["tenant", "provider", "event_id"], schema="payments")


def downgrade() -> None:
    # Two sellers' events with one id cannot both stay under the old key: the later ones go.
    op.execute(
        "DELETE FROM payments.provider_event e USING payments.provider_event f "
        "WHERE e.provider = f.provider AND e.event_id = f.event_id AND (e.received_at, e.tenant) > (f.received_at, f.tenant)"
    )
    op.drop_constraint("pk_provider_event", "provider_event", schema="payments", type_="primary")
    op.create_primary_key("pk_provider_event", "provider_event", ["provider", "event_id"], schema="payments")
