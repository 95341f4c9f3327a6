"""products carry a revision (the `revision` of their ProductPublished event), and the catalogue
as it stands is published once through the outbox, so a usage-ingest that starts knowing nothing
learns every product that existed before products were published

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:30:00
"""
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from billing_events import to_kafka

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "rating"


def upgrade() -> None:
    op.add_column("product", sa.Column("revision", sa.Integer(), nullable=False, server_default="1"), schema=S)
    # The same events put_product writes (ids derived from seller, code and revision, so running
    # this again, or a PUT of the same revision, adds nothing); the distributor as rating's settings say.
    from rating.catalogue.service import product_published
    from rating.config import Settings

    distributor_id = Settings().distributor_id
    bind = op.get_bind()
    now = datetime.now(UTC)
    insert = sa.text(
        "INSERT INTO rating.outbox (event_id, event_type, topic, key, headers, value)"
        " VALUES (:event_id, :event_type, :topic, :key, CAST(:headers AS jsonb), :value) ON CONFLICT (event_id) DO NOTHING"
    )
    for product in bind.execute(sa.text("SELECT * FROM rating.product ORDER BY seller_id, code")).all():
        event = product_published(product, distributor_id, "rating", now)
        message = to_kafka(event)
        headers = json.dumps([[name, value.decode()] for name, value in message.headers])
        bind.execute(
            insert,
            {"event_id": event.id, "event_type": event.type, "topic": message.topic, "key": message.key, "headers": headers, "value": message.value},
        )


def downgrade() -> None:
    op.drop_column("product", "revision", schema=S)
