"""The Stellar chain adapter (payouts and chain deposits); built by its own issue."""
