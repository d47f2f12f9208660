"""The image ledger (tools.ledger), its chat commands and its terminal commands."""
