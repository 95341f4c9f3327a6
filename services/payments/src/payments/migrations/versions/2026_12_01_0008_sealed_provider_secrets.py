"""provider credentials sealed at rest (AES-GCM, billing_runtime.crypto); secrets redacted in old audit rows

Revision ID: 0008_sealed_provider_secrets
Revises: 0007_event_ids_per_tenant
Create Date: 2026-12-01 13:00:00

Needs the keyring (SECRETS_KEYS, or SECRETS_DEV_KEY_FILE in development) only when there are rows
to seal.
"""
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from billing_runtime.crypto import Keyring, context, is_sealed, redact_audit_log

revision: str = "0008_sealed_provider_secrets"
down_revision: str | None = "0007_event_ids_per_tenant"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("api_key", "webhook_secret")


def _where(tenant: str, provider: str, column: str) -> bytes:
    return context("payments", "provider_account", tenant, provider, column)


def _convert(seal: bool) -> None:
    conn = op.get_bind()
    rows = conn.execute(text("SELECT tenant, provider, api_key, webhook_secret FROM payments.provider_account FOR UPDATE")).all()
    todo = [r for r in rows if any(is_sealed(getattr(r, c)) != seal for c in COLUMNS)]
    if not todo:
        return
    keyring = Keyring.from_env()
    for row in todo:
        values = {}
        for column in COLUMNS:
            value, where = getattr(row, column), _where(row.tenant, row.provider, column)
            if seal and not is_sealed(value):
                values[column] = keyring.seal(value, where)
            elif not seal and is_sealed(value):
                values[column] = keyring.open(value, where)
        sets = ", ".join(f"{c} = :{c}" for c in values)
        conn.execute(
            text(f"UPDATE payments.provider_account SET {sets} WHERE tenant = :tenant AND provider = :provider"),
            {**values, "tenant": row.tenant, "provider": row.provider},
        )


def upgrade() -> None:
    _convert(seal=True)
    redact_audit_log(op.get_bind(), "payments", ["/v1/providers/%"])


def downgrade() -> None:
    _convert(seal=False)
