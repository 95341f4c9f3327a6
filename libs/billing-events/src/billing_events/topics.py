"""Topic names, their final partition counts, and the partition key rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int


CUSTOMERS = Topic("billing.customers", 4)
ORDERS = Topic("billing.orders", 4)
USAGE = Topic("billing.usage", 8)
PERIODS = Topic("billing.periods", 4)
INVOICES = Topic("billing.invoices", 4)
PAYMENTS = Topic("billing.payments", 4)
DUNNING = Topic("billing.dunning", 4)
NOTIFICATIONS = Topic("billing.notifications", 4)
# Rating's catalogue and calendar as other services need them (usage-ingest checks orders and
# credits against the products, historic imports against the closed periods): little traffic,
# one partition, so every reader sees one seller's products and runs in one order.
CATALOGUE = Topic("billing.catalogue", 1)
DEAD_LETTER = Topic("billing.deadletter", 1)
# API key lifecycle: one partition, so every reader folds issue and revoke in one order.
AUTH = Topic("billing.auth", 1)

ALL_TOPICS: tuple[Topic, ...] = (
    CUSTOMERS,
    ORDERS,
    USAGE,
    PERIODS,
    INVOICES,
    PAYMENTS,
    DUNNING,
    NOTIFICATIONS,
    CATALOGUE,
    DEAD_LETTER,
    AUTH,
)
# Partition counts cannot grow later (Tansu lacks CreatePartitions, and growing them would
# reshuffle keys): create every topic at this size.
