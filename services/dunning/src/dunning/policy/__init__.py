"""Dunning policies: a seller's ordered steps at day offsets from the due date."""
