"""Each seller's own provider accounts (Stripe, GoCardless) and the gateways that call them."""
