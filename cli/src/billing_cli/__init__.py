"""The `billing` command."""
