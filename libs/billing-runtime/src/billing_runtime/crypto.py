"""Secrets at rest: AES-256-GCM through `cryptography`, with a keyring from settings.

A sealed value reads `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. Every value is
sealed with associated data naming where it lives (`context(schema, table, tenant, row, column)`),
so a ciphertext copied to another tenant's row, or to another column, does not open.

The keyring (`SECRETS_KEYS`: key id → base64 of 32 random bytes; `SECRETS_CURRENT_KEY`: the id new
values are sealed with) keeps older keys for opening what they sealed; `Keyring.reseal` moves a
value to the current key (`billing secrets rotate` does it for every sealed column). Without
`SECRETS_KEYS` a service refuses to start, unless `SECRETS_DEV_KEY_FILE` names a file for a
generated development key (`billing up`, `billing demo` and the test plugin set it, under
`.billing/`): there is no key in the code.

`last4` / `redact_secrets` give what may be shown or logged instead of a secret: `…` and its last
four characters.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
# JSON members that hold a secret wherever they appear (provider credentials, webhook signing
# secrets): replaced by `…last4` in audit rows.
SECRET_FIELDS = frozenset({"api_key", "webhook_secret", "secret", "previous_secret", "access_token"})


class SecretsKeyMissing(RuntimeError):
    """No key to seal secrets with: a start-up error, never a silent default."""


class SecretUnreadable(RuntimeError):
    """A sealed value that no key of the keyring opens (unknown key id, tampered, or moved)."""


def context(*parts: str) -> bytes:
    """The associated data binding a sealed value to its place (schema, table, tenant, row, column)."""
    return "\x1f".join(parts).encode()


def is_sealed(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def last4(secret: str | None) -> str:
    """What may be shown of a secret: `…` and its last four characters (nothing of a short one)."""
    if not secret:
        return ""
    return "…" + secret[-4:] if len(secret) >= 12 else "…"


def redact_secrets(value: Any) -> Any:
    """`value` (parsed JSON) with every member named in `SECRET_FIELDS` shown as `last4`."""
    if isinstance(value, dict):
        return {k: (last4(v) if k in SECRET_FIELDS and isinstance(v, str) else redact_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))


def new_key() -> str:
    """A new key for `SECRETS_KEYS`, base64url of 32 random bytes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


@dataclass(frozen=True, repr=False)
class Keyring:
    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise SecretsKeyMissing(f"SECRETS_CURRENT_KEY {self.current!r} is not among SECRETS_KEYS ({', '.join(sorted(self.keys))})")
        for key_id, key in self.keys.items():
            if not key_id or ":" in key_id or len(key) != KEY_BYTES:
                raise SecretsKeyMissing(f"secrets key {key_id!r} must have an id without ':' and be {KEY_BYTES} bytes (base64)")

    def __repr__(self) -> str:
        return f"Keyring(current={self.current!r}, keys={sorted(self.keys)!r})"

    def seal(self, plaintext: str, where: bytes) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(), where)
        return f"{PREFIX}{self.current}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, sealed: str, where: bytes) -> str:
        key_id, blob = self._parts(sealed)
        key = self.keys.get(key_id)
        if key is None:
            raise SecretUnreadable(f"sealed with key {key_id!r}, which is not in SECRETS_KEYS")
        try:
            raw = _b64decode(blob)
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], where).decode()
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SecretUnreadable(f"a value sealed with key {key_id!r} does not open here (tampered, or not this row's)") from exc

    def key_id_of(self, sealed: str) -> str:
        return self._parts(sealed)[0]

    def reseal(self, sealed: str, where: bytes) -> str | None:
        """`sealed` sealed again with the current key; None when it already is."""
        if self.key_id_of(sealed) == self.current:
            return None
        return self.seal(self.open(sealed, where), where)

    @staticmethod
    def _parts(sealed: str) -> tuple[str, str]:
        if not is_sealed(sealed):
            raise SecretUnreadable("not a sealed value")
        key_id, _, blob = sealed[len(PREFIX) :].partition(":")
        return key_id, blob

    @classmethod
    def from_config(cls, keys: Mapping[str, str], current: str | None, dev_key_file: str | Path | None) -> Keyring:
        """The keyring `SECRETS_KEYS` / `SECRETS_CURRENT_KEY` name; failing those, the development key
        in `SECRETS_DEV_KEY_FILE` (made on first use); failing that, `SecretsKeyMissing`."""
        if keys:
            try:
                decoded = {key_id: _b64decode(value) for key_id, value in keys.items()}
            except (ValueError, binascii.Error) as exc:
                raise SecretsKeyMissing("SECRETS_KEYS values must be base64 of 32 bytes") from exc
            if current is None and len(decoded) > 1:
                raise SecretsKeyMissing("SECRETS_KEYS has several keys: set SECRETS_CURRENT_KEY to the one new secrets are sealed with")
            return cls(decoded, current or next(iter(decoded)))
        if dev_key_file:
            key_id, key = dev_key(Path(dev_key_file))
            return cls({key_id: _b64decode(key)}, key_id)
        raise SecretsKeyMissing(
            "no key to seal secrets at rest: set SECRETS_KEYS (JSON, key id → base64 of 32 random bytes, e.g. from "
            "`billing secrets new-key`) and SECRETS_CURRENT_KEY; SECRETS_DEV_KEY_FILE is for development only"
        )

    @classmethod
    def from_settings(cls, settings: Any) -> Keyring:
        return cls.from_config(settings.secrets_keys, settings.secrets_current_key, settings.secrets_dev_key_file)

    @classmethod
    def from_env(cls) -> Keyring:
        """For migrations and the CLI: the same variables the services read."""
        keys = json.loads(os.environ["SECRETS_KEYS"]) if os.environ.get("SECRETS_KEYS") else {}
        return cls.from_config(keys, os.environ.get("SECRETS_CURRENT_KEY") or None, os.environ.get("SECRETS_DEV_KEY_FILE") or None)


def dev_key(path: Path) -> tuple[str, str]:
    """(key id, key) of the development key in `path`, made (once, atomically) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = new_key()
        key_id = "dev-" + secrets.token_hex(4)
        staging = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"key_id": key_id, "key": key}, out)
        try:
            os.link(staging, path)  # fails if another process made it first: theirs is kept
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    found = json.loads(path.read_text())
    return str(found["key_id"]), str(found["key"])


def redact_audit_log(connection: Any, schema: str, path_patterns: list[str]) -> int:
    """For a migration (a synchronous connection): show as `…last4` every secret in the audit rows of
    the paths matching `path_patterns` (SQL LIKE), written before audit rows were redacted. The
    append-only trigger is lifted for this statement's transaction only. Returns the rows changed."""
    from sqlalchemy import text

    table = f'"{schema}".audit_log'
    matches = " OR ".join(f"path LIKE :p{i}" for i in range(len(path_patterns)))
    params = {f"p{i}": p for i, p in enumerate(path_patterns)}
    rows = connection.execute(text(f"SELECT id, request, before, after FROM {table} WHERE {matches}"), params).all()
    redacted = [(r.id, [redact_secrets(v) for v in (r.request, r.before, r.after)], [r.request, r.before, r.after]) for r in rows]
    changed = [(i, new) for i, new, old in redacted if new != old]
    if not changed:
        return 0
    connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER audit_log_append_only"))
    for row_id, (request, before, after) in changed:
        connection.execute(
            text(f"UPDATE {table} SET request = CAST(:request AS jsonb), before = CAST(:before AS jsonb), after = CAST(:after AS jsonb) WHERE id = :id"),
            {"id": row_id, **{k: None if v is None else json.dumps(v) for k, v in (("request", request), ("before", before), ("after", after))}},
        )
    connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER audit_log_append_only"))
    return len(changed)
