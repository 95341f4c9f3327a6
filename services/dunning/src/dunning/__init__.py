"""dunning: open invoices tracked as cases, closed when they are paid."""
