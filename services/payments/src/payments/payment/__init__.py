"""Payments recorded against invoices. Today: bank transfers entered by finance."""
