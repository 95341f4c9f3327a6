"""The invoices money can be paid against: a projection of InvoiceIssued."""
