"""VAT identification numbers checked offline (python-stdnum): syntax and check digits."""

from __future__ import annotations

from dataclasses import dataclass

from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError
from stdnum.gb import vat as gb_vat

from invoicing.tax.rates import EU_MEMBER_STATES, vat_country_code


@dataclass(frozen=True)
class VatIdCheck:
    vat_id: str
    valid: bool
    reason: str | None = None

    @property
    def country_prefix(self) -> str:
        return self.vat_id[:2]


def check_vat_id(vat_id: str, country: str | None) -> VatIdCheck:
    """Normalise and check `vat_id` for a buyer in `country` (ISO 3166). Invalid when the checksum
    or format fails, or when the number belongs to another country than the buyer's."""
    raw = vat_id.strip().upper().replace(" ", "").replace(".", "").replace("-", "")
    if country == "GB" or raw.startswith("GB"):
        try:
            number = "GB" + gb_vat.validate(raw)
        except ValidationError as exc:
            return VatIdCheck(raw, False, f"not a valid GB VAT number ({exc})")
        return VatIdCheck(number, True) if country in (None, "GB") else VatIdCheck(number, False, f"a GB VAT number for a buyer in {country}")
    if country is not None and country in EU_MEMBER_STATES and not raw.startswith(vat_country_code(country)) and raw[:2].isdigit():
        raw = vat_country_code(country) + raw  # given without its country prefix
    try:
        number = eu_vat.compact(eu_vat.validate(raw))
    except ValidationError as exc:
        return VatIdCheck(raw, False, f"not a valid EU VAT number ({exc})")
    if country is not None and number[:2] != vat_country_code(country):
        return VatIdCheck(number, False, f"a {number[:2]} VAT number for a buyer in {country}")
    return VatIdCheck(number, True)
