"""invoicing: turns closed billing periods into numbered invoices and settles them from payments."""
