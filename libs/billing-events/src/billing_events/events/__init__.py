"""Event models, one module per producing service."""
