"""usage-ingest: what partners post, validated record by record and emitted as events."""
