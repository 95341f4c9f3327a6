"""Dunning cases: one per issued invoice, open until the invoice is settled."""
