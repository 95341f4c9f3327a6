"""Bank transfers: RF creditor references, camt.053 and MT940 statement import and matching."""
