"""Billing policy: how a product bills (BILLING-RULES §1–3), set per product and overridable per
subscription. Pure: validation raises the catalogue's problem codes, nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rating.errors import InvalidPolicy, InvalidSnapshotDay


class QuantityRule(StrEnum):
    """How many units of a product a period bills (BILLING-RULES §2)."""

    CONTRACTED = "contracted"
    USAGE_SUM = "usage_sum"
    SNAPSHOT = "snapshot"
    LATEST = "latest"
    PEAK = "peak"
    DISTINCT_ACTIVE = "distinct_active"


class Timing(StrEnum):
    """When a period's charge is billed: after it (usage known) or before it (BILLING-RULES §3)."""

    ARREARS = "arrears"
    ADVANCE = "advance"


class Interval(StrEnum):
    """The term a recurring charge covers."""

    MONTH = "month"
    YEAR = "year"


class Proration(StrEnum):
    """How a part period is charged: in full, or by its days."""

    NONE = "none"
    DAILY = "daily"


class FirstPeriod(StrEnum):
    """Which period an order is first billed in."""

    ORDER_PERIOD = "order_period"
    NEXT_PERIOD = "next_period"


# The knobs that are enums, for turning a stored override (JSON strings) back into them.
_ENUM_KNOBS: dict[str, type[StrEnum]] = {
    "quantity_rule": QuantityRule,
    "timing": Timing,
    "interval": Interval,
    "proration": Proration,
    "first_period": FirstPeriod,
}

OBSERVED_RULES = frozenset({QuantityRule.SNAPSHOT, QuantityRule.LATEST, QuantityRule.PEAK, QuantityRule.DISTINCT_ACTIVE})


class PolicyIn(BaseModel):
    """The knobs, each optional: what is not given comes from the product (or the default)."""

    model_config = ConfigDict(extra="forbid")

    quantity_rule: QuantityRule | None = None
    snapshot_day: int | None = Field(default=None, description="Day 1–28 of the period for the snapshot rule.")
    timing: Timing | None = None
    interval: Interval | None = None
    proration: Proration | None = None
    first_period: FirstPeriod | None = None
    setup_product: str | None = Field(default=None, max_length=64, description="One-time product billed per ordered unit in the order's period.")
    commitment_months: int | None = Field(default=None, ge=0, le=120)
    notice_business_days: int | None = Field(default=None, ge=0, le=365)
    vendor_cutoff_day: int | None = Field(default=None, ge=1, le=31)
    change_cutoff_business_days: int | None = Field(default=None, ge=0, le=20)
    true_up: bool | None = None
    allows_credits: bool | None = None


@dataclass(frozen=True)
class BillingPolicy:
    quantity_rule: QuantityRule = QuantityRule.CONTRACTED
    snapshot_day: int | None = None
    timing: Timing = Timing.ARREARS
    interval: Interval = Interval.MONTH
    proration: Proration = Proration.NONE
    first_period: FirstPeriod = FirstPeriod.ORDER_PERIOD
    setup_product: str | None = None
    commitment_months: int = 0
    notice_business_days: int = 0
    vendor_cutoff_day: int | None = None
    change_cutoff_business_days: int = 0
    true_up: bool = False
    allows_credits: bool = False

    def overridden(self, override: dict[str, Any] | None) -> BillingPolicy:
        """This policy with the non-null knobs of `override` (a stored PolicyIn) applied, checked."""
        if not override:
            return self
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {k: (_ENUM_KNOBS[k](v) if k in _ENUM_KNOBS else v) for k, v in override.items() if v is not None and k in known}
        if changes.get("quantity_rule", QuantityRule.SNAPSHOT) is not QuantityRule.SNAPSHOT and "snapshot_day" not in changes:
            changes["snapshot_day"] = None  # another rule than the product's drops its snapshot day
        return check(replace(self, **changes))

    def as_json(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}


def check(policy: BillingPolicy) -> BillingPolicy:
    """The combinations that make sense; anything else is a 422 with a stable code."""
    if policy.quantity_rule is QuantityRule.SNAPSHOT:
        if policy.snapshot_day is None or not 1 <= policy.snapshot_day <= 28:
            raise InvalidSnapshotDay(f"snapshot_day must be 1–28 for the snapshot rule, got {policy.snapshot_day}", field="snapshot_day")
    elif policy.snapshot_day is not None:
        raise InvalidSnapshotDay("snapshot_day only applies to the snapshot rule", field="snapshot_day")
    if policy.quantity_rule is not QuantityRule.CONTRACTED:
        # Advance billing and yearly terms bill a quantity known before the period: an ordered one.
        if policy.timing == Timing.ADVANCE:
            raise InvalidPolicy("timing advance needs the contracted quantity rule", field="timing")
        if policy.interval == Interval.YEAR:
            raise InvalidPolicy("a yearly interval needs the contracted quantity rule", field="interval")
        if policy.true_up:
            raise InvalidPolicy("true_up reconciles a contracted quantity with counts; use the contracted rule", field="true_up")
    if policy.interval == Interval.YEAR and policy.proration == Proration.DAILY:
        raise InvalidPolicy("daily proration applies to monthly terms", field="proration")
    return policy


def product_policy(quantity_rule: QuantityRule, stored: dict[str, Any] | None) -> BillingPolicy:
    return BillingPolicy(quantity_rule=quantity_rule).overridden(stored)
