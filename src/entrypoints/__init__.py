"""Entry points: the `ledger` CLI (every service's main), its client for payout runs, and
``bootstrap``, the one module that builds the system's parts from settings."""
