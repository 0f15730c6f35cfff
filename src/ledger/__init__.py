"""The ledger's domain model: money, accounts, transfers and their rules. No I/O."""
