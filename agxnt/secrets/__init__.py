"""Per-account secrets: encrypted at rest, written and listed by name, read only by the agents that run
for the account, and redacted from everything they return or log."""

from agxnt.secrets.redact import redact, register_values
from agxnt.secrets.store import SecretInfo, SecretStore, resolve_for, store_for

__all__ = ["SecretInfo", "SecretStore", "redact", "register_values", "resolve_for", "store_for"]
