"""Secrets at rest (billing_runtime.crypto): sealed values bound to their place, a keyring that
rotates, no key in the code, redaction as `…last4`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from billing_runtime.config import CommonSettings
from billing_runtime.crypto import Keyring, SecretsKeyMissing, SecretUnreadable, context, last4, new_key, redact_secrets
from billing_runtime.service import ServiceRuntime, runtime_tables


def _metadata() -> MetaData:
    metadata = MetaData(schema="keeps_secrets")
    runtime_tables(metadata)
    return metadata


HERE = context("payments", "provider_account", "tenant-a", "stripe", "api_key")


def test_a_sealed_value_opens_only_where_it_was_sealed() -> None:
    keyring = Keyring.from_config({"k1": new_key()}, None, None)
    sealed = keyring.seal("sk_live_abcdefgh1234", HERE)
    assert sealed.startswith("sealed:v1:k1:") and "1234" not in sealed
    assert keyring.open(sealed, HERE) == "sk_live_abcdefgh1234"
    assert keyring.seal("sk_live_abcdefgh1234", HERE) != sealed  # a fresh nonce each time
    other_tenant = context("payments", "provider_account", "tenant-b", "stripe", "api_key")
    other_column = context("payments", "provider_account", "tenant-a", "stripe", "webhook_secret")
    for elsewhere in (other_tenant, other_column):
        with pytest.raises(SecretUnreadable):
            keyring.open(sealed, elsewhere)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretUnreadable):
        keyring.open(tampered, HERE)


def test_rotation_keeps_old_keys_for_opening_and_reseals_with_the_current_one() -> None:
    old_key, new = new_key(), new_key()
    before = Keyring.from_config({"2026-11": old_key}, None, None)
    sealed = before.seal("whsec_0123456789abcdef0123456789abcdef", HERE)
    after = Keyring.from_config({"2026-12": new, "2026-11": old_key}, "2026-12", None)
    assert after.open(sealed, HERE) == "whsec_0123456789abcdef0123456789abcdef"
    resealed = after.reseal(sealed, HERE)
    assert resealed is not None and after.key_id_of(resealed) == "2026-12" and after.reseal(resealed, HERE) is None
    with pytest.raises(SecretUnreadable, match="not in SECRETS_KEYS"):
        Keyring.from_config({"2026-12": new}, None, None).open(sealed, HERE)
    with pytest.raises(SecretsKeyMissing, match="SECRETS_CURRENT_KEY"):
        Keyring.from_config({"a": new, "b": old_key}, None, None)
    with pytest.raises(SecretsKeyMissing, match="32 bytes"):
        Keyring.from_config({"short": "c2hvcnQ"}, None, None)


def test_without_a_key_a_service_that_keeps_secrets_does_not_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SECRETS_KEYS", raising=False)
    monkeypatch.delenv("SECRETS_DEV_KEY_FILE", raising=False)
    runtime = ServiceRuntime("payments", CommonSettings(), _metadata())
    with pytest.raises(SecretsKeyMissing, match="SECRETS_KEYS"):
        runtime.seal_secrets()
    with pytest.raises(SecretsKeyMissing):
        runtime.sealing()

    # Development: a key generated once into the file named, the same for every process after.
    dev_file = tmp_path / ".billing" / "secrets-dev-key.json"
    monkeypatch.setenv("SECRETS_DEV_KEY_FILE", str(dev_file))
    first = ServiceRuntime("payments", CommonSettings(), _metadata()).seal_secrets()
    second = Keyring.from_env()
    assert first.current == second.current and first.current.startswith("dev-")
    assert second.open(first.seal("token", HERE), HERE) == "token"
    assert json.loads(dev_file.read_text())["key_id"] == first.current and oct(dev_file.stat().st_mode)[-3:] == "600"
    assert "key" not in repr(first).replace("keys", "")  # no key material in a repr

    monkeypatch.setenv("SECRETS_KEYS", json.dumps({"prod-1": new_key()}))
    assert Keyring.from_env().current == "prod-1"  # given keys win over the development file


def test_redaction_shows_only_the_last_four_characters() -> None:
    assert last4("sk_live_abcdefgh1234") == "…1234" and last4("short") == "…" and last4("") == ""
    body = {"api_key": "sk_live_abcdefgh1234", "nested": [{"secret": "whsec_zzzzzzzzzzzz9876"}], "url": "https://x"}
    assert redact_secrets(body) == {"api_key": "…1234", "nested": [{"secret": "…9876"}], "url": "https://x"}
