"""The compute network: accounts and wallet sign-in, providers, stakes, provisions, matching, leases and the ledger."""
