"""Collecting issued invoices: attempts against the buyer's method, the worker that calls the providers, refunds."""
