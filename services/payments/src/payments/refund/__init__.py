"""Giving money back: refunds of payments for credit notes (provider refunds, SEPA refund files), and the buyer's balance."""
