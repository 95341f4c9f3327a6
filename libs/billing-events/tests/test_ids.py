"""The derived ids are RFC 4122 version-5 UUIDs in a fixed namespace: never may they change."""

from __future__ import annotations

import uuid

from billing_events import account_id, derived_event_id, subscription_id
from billing_events.ids import _NAMESPACE


def test_ids_are_uuid5_of_the_fixed_namespace() -> None:
    names = ["", "c-1", "r" * 300, "Zürich", "顧客", "a:b:c", "\x7f\x01"]
    for tenant in ("partner-a", "distributor"):
        for name in names:
            assert account_id(tenant, name) == str(uuid.uuid5(_NAMESPACE, f"account:{tenant}:{name}"))
            assert subscription_id(tenant, name) == str(uuid.uuid5(_NAMESPACE, f"subscription:{tenant}:{name}"))
            assert derived_event_id("usage", tenant, name) == str(uuid.uuid5(_NAMESPACE, f"event:usage:{tenant}:{name}"))
    for i in range(2000):
        assert derived_event_id("usage", "bench", f"r{i}") == str(uuid.uuid5(_NAMESPACE, f"event:usage:bench:r{i}"))


def test_ids_issued_before_stay_the_same() -> None:
    assert str(_NAMESPACE) == "6f0b9d1e-3c1a-5b7e-9a43-0c2d4e8f1a57"
    assert account_id("partner-a", "c-1") == str(uuid.uuid5(uuid.UUID("6f0b9d1e-3c1a-5b7e-9a43-0c2d4e8f1a57"), "account:partner-a:c-1"))
