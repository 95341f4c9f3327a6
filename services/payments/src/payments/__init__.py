"""payments: money received against invoices, and the events that say so."""
