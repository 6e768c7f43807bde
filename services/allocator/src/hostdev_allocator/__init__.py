"""The node's device ledger and reservations."""
