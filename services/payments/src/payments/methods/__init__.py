"""Payment methods per buyer: a card saved through a Stripe SetupIntent, a GoCardless mandate, or bank transfer."""
