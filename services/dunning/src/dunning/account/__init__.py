"""Accounts: suspension and reinstatement, and which partner a customer belongs to (for cascades)."""
