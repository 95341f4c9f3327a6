"""The buyer's balance with a seller: money kept for its next invoices."""
