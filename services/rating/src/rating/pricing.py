"""Price models (BILLING-RULES §4): what a quantity costs. Pure and exact: every result is a list
of segments (quantity × unit price, unrounded), so that each becomes an invoice line whose amount
is exactly its quantity times its unit price; invoicing rounds once.

| model | parameters | segments for a quantity Q |
|---|---|---|
| per_unit | unit_price | Q × unit_price |
| graduated | tiers [{up_to, unit_price}] (last up_to null) | the units inside each tier at its price, one segment per tier used |
| volume | tiers | all Q units at the price of the tier Q falls in |
| package | package_size, package_price | ⌈Q ÷ size⌉ packages × package_price |
| flat | amount | 1 × amount when Q > 0 |
| cost_plus | markup_percent | the usage's cost × (1 + markup): quantity = cost, unit price = 1 + markup |
| markup | markup_percent | (retail only) the wholesale segments with unit prices × (1 + markup) |
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from rating.errors import InvalidPriceModel


class PriceModelKind(StrEnum):
    """How a price turns a quantity into money (BILLING-RULES §4)."""

    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    FLAT = "flat"
    COST_PLUS = "cost_plus"
    MARKUP = "markup"


MODELS = tuple(PriceModelKind)
_KINDS = frozenset(PriceModelKind)
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]{1,10})?$")
HUNDRED = Decimal(100)


def _given(value: Decimal | None) -> Decimal:
    """A field that the model's kind requires (`parse_model` refuses a model without it)."""
    assert value is not None, "a field the price model requires is missing"
    return value


@dataclass(frozen=True)
class Segment:
    quantity: Decimal
    unit_price: Decimal
    note: str | None = None

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # inclusive upper bound; None: no bound
    unit_price: Decimal


@dataclass(frozen=True)
class PriceModel:
    model: PriceModelKind
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    amount: Decimal | None = None
    markup_percent: Decimal | None = None

    @property
    def needs_cost(self) -> bool:
        return self.model == PriceModelKind.COST_PLUS

    @property
    def per_unit_price(self) -> Decimal | None:
        """The one unit price of a per-unit model (None for the others)."""
        return self.unit_price if self.model == PriceModelKind.PER_UNIT else None

    def segments(self, quantity: Decimal, cost: Decimal | None = None, base: PriceModel | None = None) -> list[Segment]:
        """The priced segments of `quantity` (with the usage's `cost` for cost-plus; with the
        wholesale model as `base` for a markup): the model's function in `PRICE_MODELS`."""
        return PRICE_MODELS[PriceModelKind(self.model)](self, quantity, cost, base)

    def total(self, quantity: Decimal, cost: Decimal | None = None, base: PriceModel | None = None) -> Decimal:
        return sum((s.amount for s in self.segments(quantity, cost, base)), Decimal(0))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model.value}
        for name in ("unit_price", "package_size", "package_price", "amount", "markup_percent"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        if self.tiers:
            out["tiers"] = [{"up_to": None if t.up_to is None else str(t.up_to), "unit_price": str(t.unit_price)} for t in self.tiers]
        return out


# --- one function per price model (BILLING-RULES §4), chosen by `PRICE_MODELS` -------------------
# Each takes the model, the quantity, the usage's cost and the wholesale model (for a markup).
# A negative quantity (credits) bills negative units at the same prices.


def per_unit(model: PriceModel, quantity: Decimal, cost: Decimal | None, base: PriceModel | None) -> list[Segment]:
    """Q × unit price."""
    return [Segment(quantity, model.unit_price)] if quantity != 0 else []  # type: ignore[arg-type]


def graduated(model: PriceModel, quantity: Decimal, cost: Decimal | None, base: PriceModel | None) -> list[Segment]:
    """Each unit at its tier's price: one segment per tier the quantity reaches."""
    sign, units = _sign_and_units(quantity)
    segments, below = [], Decimal(0)
    for number, tier in enumerate(model.tiers, start=1):
        top = units if tier.up_to is None else min(units, tier.up_to)
        if top > below:
            segments.append(Segment(sign * (top - below), tier.unit_price, f"tier {number}"))
        below = top if tier.up_to is None else tier.up_to
        if units <= below:
            break
    return segments


def volume(model: PriceModel, quantity: Decimal, cost: Decimal | None, base: PriceModel | None) -> list[Segment]:
    """All Q units at the price of the tier Q falls in."""
    if quantity == 0:
        return []
    units = abs(quantity)
    tier = next(t for t in model.tiers if t.up_to is None or units <= t.up_to)
    return [Segment(quantity, tier.unit_price)]


def package(model: PriceModel, quantity: Decimal, cost: Decimal | None, base: PriceModel | None) -> list[Segment]:
    """⌈Q ÷ size⌉ packages × package price."""
    if quantity == 0:
        return []
    sign, units = _sign_and_units(quantity)
    packages = Decimal(math.ceil(units / model.package_size))  # type: ignore[operator]
    return [Segment(sign * packages, model.package_price, f"packages of {model.package_size}")]  # type: ignore[arg-type]


def flat(model: PriceModel, quantity: Decimal, cost: Decimal | None, base: PriceModel | None) -> list[Segment]:
    """1 × amount for any quantity (−1 × amount for a credit)."""
    if quantity == 0:
        return []
    sign, _ = _sign_and_units(quantity)
    return [Segment(sign, model.amount)]  # type: ignore[arg-type]


def cost_plus(model: PriceModel, quantity: Decimal, cost: Decimal | None, base: PriceModel | None) -> list[Segment]:
    """The usage's cost × (1 + markup): quantity = cost, unit price = 1 + markup; nothing without a cost."""
    if cost is None:
        return []
    return [Segment(cost, 1 + model.markup_percent / HUNDRED, f"cost plus {model.markup_percent}%")]  # type: ignore[operator]


def markup(model: PriceModel, quantity: Decimal, cost: Decimal | None, base: PriceModel | None) -> list[Segment]:
    """(Retail only) the wholesale model's segments with unit prices × (1 + markup)."""
    if base is None or base.model == PriceModelKind.MARKUP:
        return []
    factor = 1 + model.markup_percent / HUNDRED  # type: ignore[operator]
    return [Segment(s.quantity, s.unit_price * factor, s.note) for s in base.segments(quantity, cost)]


def _sign_and_units(quantity: Decimal) -> tuple[Decimal, Decimal]:
    return (Decimal(1) if quantity > 0 else Decimal(-1)), abs(quantity)


PRICE_MODELS: dict[PriceModelKind, Callable[[PriceModel, Decimal, Decimal | None, PriceModel | None], list[Segment]]] = {
    PriceModelKind.PER_UNIT: per_unit,
    PriceModelKind.GRADUATED: graduated,
    PriceModelKind.VOLUME: volume,
    PriceModelKind.PACKAGE: package,
    PriceModelKind.FLAT: flat,
    PriceModelKind.COST_PLUS: cost_plus,
    PriceModelKind.MARKUP: markup,
}


def _dec(body: dict[str, Any], name: str, *, positive: bool = False) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not _DECIMAL.fullmatch(str(value).strip()):
        raise InvalidPriceModel(f'{name} must be a non-negative decimal string such as "35.00"', field=name)
    number = Decimal(str(value).strip())
    if positive and number <= 0:
        raise InvalidPriceModel(f"{name} must be greater than zero", field=name)
    return number


def parse_model(body: dict[str, Any]) -> PriceModel:
    """A price model as sent (decimal strings, never floats); a bad one is `invalid_price_model`."""
    sent = body.get("model")
    if not isinstance(sent, str) or sent not in _KINDS:
        raise InvalidPriceModel(f"model must be one of {', '.join(PriceModelKind)}", field="model")
    kind = PriceModelKind(sent)
    allowed = {
        PriceModelKind.PER_UNIT: {"unit_price"},
        PriceModelKind.GRADUATED: {"tiers"},
        PriceModelKind.VOLUME: {"tiers"},
        PriceModelKind.PACKAGE: {"package_size", "package_price"},
        PriceModelKind.FLAT: {"amount"},
        PriceModelKind.COST_PLUS: {"markup_percent"},
        PriceModelKind.MARKUP: {"markup_percent"},
    }[kind]
    extra = set(body) - allowed - {"model"}
    if extra:
        raise InvalidPriceModel(f"{kind} takes {', '.join(sorted(allowed))}, not {', '.join(sorted(extra))}", field=sorted(extra)[0])
    if kind == PriceModelKind.PER_UNIT:
        return PriceModel(kind, unit_price=_dec(body, "unit_price"))
    if kind == PriceModelKind.PACKAGE:
        return PriceModel(kind, package_size=_dec(body, "package_size", positive=True), package_price=_dec(body, "package_price"))
    if kind == PriceModelKind.FLAT:
        return PriceModel(kind, amount=_dec(body, "amount"))
    if kind in (PriceModelKind.COST_PLUS, PriceModelKind.MARKUP):
        return PriceModel(kind, markup_percent=_dec(body, "markup_percent"))
    return PriceModel(kind, tiers=_tiers(body.get("tiers")))


def _tiers(raw: Any) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidPriceModel("tiers must be a non-empty list of {up_to, unit_price}", field="tiers")
    tiers: list[Tier] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) - {"up_to", "unit_price"}:
            raise InvalidPriceModel("each tier is {up_to, unit_price}", field=f"tiers.{i}")
        last = i == len(raw) - 1
        up_to = None if item.get("up_to") is None else _dec(item, "up_to", positive=True)
        if (up_to is None) != last:
            raise InvalidPriceModel("every tier but the last needs up_to; the last has none", field=f"tiers.{i}.up_to")
        if up_to is not None and tiers and up_to <= _given(tiers[-1].up_to):  # every tier but the last has a bound
            raise InvalidPriceModel("tier bounds must increase", field=f"tiers.{i}.up_to")
        tiers.append(Tier(up_to, _dec(item, "unit_price")))
    return tuple(tiers)
