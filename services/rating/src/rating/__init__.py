"""rating: the catalogue, subscriptions and usage as rated, and the bill run that closes a period."""
