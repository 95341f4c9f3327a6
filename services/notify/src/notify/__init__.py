"""notify: tells billing contacts what happened, in the seller's brand, and keeps a delivery log."""
