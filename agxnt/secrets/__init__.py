"""Per-account secrets: encrypted at rest, written and listed by name, read only by the agents that run
for the account, and masked from everything they return or log.

- Write them with ``PUT /v1/secrets/{name}`` (``{"value": ...}``), list names with ``GET /v1/secrets``,
  remove with ``DELETE /v1/secrets/{name}``; or ``cxmpute secrets set|ls|rm``. No route returns a value.
- Values are sealed with AES-256-GCM under a key derived (HKDF) from the platform's ``secret_key``; the
  owner and name are authenticated with each value, so a row copied to another account does not open.
- Workflow params and agent inputs name secrets; ``AgentContext.secret(name)`` returns the injected value
  or reads the owner's store. A runner may also fill ``AgentContext.secrets`` up front with
  :func:`resolve_for`.
- Every value handed out is registered for masking: log records of any library (httpx logs URLs, which
  carry Telegram bot tokens) are masked when created, and the social agents mask their outputs and errors.
"""

from typing import Any

from agxnt.secrets.redact import redact, register_values

__all__ = ["SecretInfo", "SecretStore", "redact", "register_values", "resolve_for", "store_for"]
_STORE = {"SecretInfo", "SecretStore", "resolve_for", "store_for"}


def __getattr__(name: str) -> Any:
    # The store (and the database library under it) loads on first use: `cxmpute secrets` talks to the API.
    if name in _STORE:
        from agxnt.secrets import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
