"""Provider webhooks: verified, deduplicated by provider event id, applied once."""
