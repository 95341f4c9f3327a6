"""webhook endpoint secrets sealed at rest (AES-GCM, billing_runtime.crypto); stored replies that show
a secret sealed; secrets redacted in old audit rows

Revision ID: 0006_sealed_webhook_secrets
Revises: 0005
Create Date: 2026-12-01 13:00:00

Needs the keyring (SECRETS_KEYS, or SECRETS_DEV_KEY_FILE in development) only when there are rows
to seal.
"""
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from billing_runtime.crypto import PREFIX, Keyring, context, is_sealed, redact_audit_log

revision: str = "0006_sealed_webhook_secrets"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("secret", "previous_secret")
SECRET_PATHS = "path LIKE '/v1/webhook-endpoints%' AND method = 'POST' AND response_body IS NOT NULL"


def _where(tenant: str, endpoint_id: str, column: str) -> bytes:
    return context("notify", "webhook_endpoint", tenant, endpoint_id, column)


def _convert(seal: bool) -> None:
    conn = op.get_bind()
    rows = conn.execute(text("SELECT endpoint_id, tenant, secret, previous_secret FROM notify.webhook_endpoint FOR UPDATE")).all()
    todo = [r for r in rows if any(getattr(r, c) is not None and is_sealed(getattr(r, c)) != seal for c in COLUMNS)]
    replies = conn.execute(text(f"SELECT tenant, key, response_body FROM notify.idempotency_key WHERE {SECRET_PATHS} FOR UPDATE")).all()
    replies = [r for r in replies if bytes(r.response_body).startswith(PREFIX.encode()) != seal]
    if not todo and not replies:
        return
    keyring = Keyring.from_env()
    for row in todo:
        values = {}
        for column in COLUMNS:
            value, where = getattr(row, column), _where(row.tenant, row.endpoint_id, column)
            if value is None:
                continue
            if seal and not is_sealed(value):
                values[column] = keyring.seal(value, where)
            elif not seal and is_sealed(value):
                values[column] = keyring.open(value, where)
        sets = ", ".join(f"{c} = :{c}" for c in values)
        conn.execute(text(f"UPDATE notify.webhook_endpoint SET {sets} WHERE endpoint_id = :endpoint_id"), {**values, "endpoint_id": row.endpoint_id})
    for reply in replies:
        where = context("notify", "idempotency_key", reply.tenant, reply.key)
        body = bytes(reply.response_body).decode()
        changed = keyring.seal(body, where) if seal else keyring.open(body, where)
        conn.execute(
            text("UPDATE notify.idempotency_key SET response_body = :body WHERE tenant = :tenant AND key = :key"),
            {"body": changed.encode(), "tenant": reply.tenant, "key": reply.key},
        )


def upgrade() -> None:
    _convert(seal=True)
    redact_audit_log(op.get_bind(), "notify", ["/v1/webhook-endpoints%"])


def downgrade() -> None:
    _convert(seal=False)
