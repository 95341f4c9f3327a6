"""The projection of rating's catalogue: one row per (seller, product code), at its latest revision."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field

from usage_ingest.db import Base


class CatalogueProduct(Base, table=True):
    __tablename__ = "catalogue_product"

    seller_id: str = Field(primary_key=True)
    product_code: str = Field(primary_key=True, index=True)
    name: str
    quantity_rule: str
    allows_credits: bool
    # The distributor's product: a partner that does not define the code itself orders this one.
    wholesale: bool
    revision: int
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
