"""The double-entry ledger: every transaction's entries sum to zero and no platform balance goes negative."""

from compute.ledger.book import Acct, balance, balances, history, post, total

__all__ = ["Acct", "balance", "balances", "history", "post", "total"]
