"""Shared runtime of the billing services: everything a service needs that is not its domain."""
