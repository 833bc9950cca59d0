"""What a user asks the market for."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from compute.market.pricing import TERM_SECONDS
from compute.provisions import Kind, Resources

MAX_DURATION_S = 366 * 86400
MAX_PRICE_GWEI = 10**12


class PriceRange(BaseModel):
    """The asks a buyer accepts, in gwei per compute-unit-second: every request matched in the market carries
    this one declaration and its one check (the ceiling, named by its field, is at least the floor)."""

    price_min_gwei: int = Field(0, ge=0, le=MAX_PRICE_GWEI, description="Lowest acceptable ask per compute-unit-second")
    price_max_gwei: int = Field(
        ..., gt=0, le=MAX_PRICE_GWEI, description="Highest acceptable ask per compute-unit-second"
    )

    @field_validator("price_max_gwei")
    @classmethod
    def _at_least_the_floor(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("price_min_gwei")
        if low is not None and value < low:
            raise ValueError(f"must be at least price_min_gwei ({low})")
        return value


class MatchRequest(PriceRange):
    kind: Kind
    resources: Resources = Field(default_factory=Resources)
    model: str | None = Field(None, max_length=200, description="Model to serve (inference, function, agent)")
    image: str | None = Field(None, max_length=300, description="Container or VM image")
    region: str | None = Field(None, max_length=64)
    term: Literal["seconds", "hour", "month"] = Field("seconds", description="Metered per second, or a rental")
    duration_s: int | None = Field(
        None,
        gt=0,
        le=MAX_DURATION_S,
        validate_default=True,
        description="Length of a per-second lease (escrowed upfront)",
    )
    provision_id: str | None = Field(
        None,
        max_length=64,
        description="Only this provision (as listed by /market/provisions); every other constraint still applies",
    )
    avoid_providers: list[str] = Field(
        default_factory=list, max_length=64, description="Providers to pass over (e.g. one that just lost this work)"
    )
    auto_renew: bool = Field(False, description="Rentals: renew at expiry while funds last")
    terms: int = Field(
        1,
        ge=1,
        le=MAX_DURATION_S // 3600,
        description="Rentals: hours or months one term spans "
        "(6 with term 'hour': six hours, billed upfront; a renewal adds as many again)",
    )

    @field_validator("duration_s")
    @classmethod
    def _duration(cls, value: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("term") == "seconds" and value is None:
            raise ValueError("required for a per-second lease (term 'seconds')")
        return value

    @field_validator("terms")
    @classmethod
    def _terms(cls, value: int, info: ValidationInfo) -> int:
        term = info.data.get("term")
        if term == "seconds" and value != 1:
            raise ValueError("only rentals (term 'hour' or 'month') span several terms")
        if term in TERM_SECONDS and TERM_SECONDS[term] * value > MAX_DURATION_S:
            raise ValueError(f"a rental term may span at most {MAX_DURATION_S // TERM_SECONDS[term]} {term}s")
        return value

    @field_validator("resources")
    @classmethod
    def _gpu(cls, value: Resources) -> Resources:
        if value.gpu_model and not value.gpu_count:
            raise ValueError("gpu_model needs gpu_count of at least 1")
        return value

    @property
    def span_s(self) -> int:
        return self.duration_s if self.term == "seconds" else TERM_SECONDS[self.term] * self.terms
