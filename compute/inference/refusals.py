"""The gateway's refusals, in OpenAI's terms: each carries the ``code`` OpenAI's clients read, and a provider's own
4xx is passed on as the provider said it."""

from __future__ import annotations

import json

from compute.errors import ComputeError


class GatewayError(ComputeError):
    """A refusal of the gateway, with OpenAI's ``code`` for it; ``kind`` is OpenAI's error ``type`` where the
    refusal names one (a provider's own), else the API derives it from the status."""

    code: str | None = None
    kind: str | None = None

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        kind: str | None = None,
    ):
        super().__init__(message, field=field, status_code=status_code)
        self.code = code or self.code
        self.kind = kind or self.kind


class ModelNotFound(GatewayError):
    status_code = 404
    code = "model_not_found"


class PriceOutOfRange(GatewayError):
    status_code = 400
    code = "price_out_of_range"


class ProviderUnavailable(GatewayError):
    status_code = 503
    code = "provider_unavailable"


def provider_refusal(status: int, content: bytes) -> GatewayError:
    """A provider's 4xx, already in OpenAI's envelope, passed on as it was said."""
    try:
        error = json.loads(content).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    message = error.get("message") or content.decode(errors="replace")[:300] or "rejected by the provider"
    return GatewayError(
        str(message),
        field=_text(error.get("param")),
        status_code=status,
        code=_text(error.get("code")),
        kind=_text(error.get("type")),
    )


def _text(value: object) -> str | None:
    return str(value) if value is not None else None
