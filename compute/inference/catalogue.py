"""The gateway's catalogue: the models some provider serves now, and why a request for a model matched nothing.

The catalogue is what OpenAI's ``/v1/models`` answers: each model a working server of an active provision serves,
with its lowest ask and a ``created`` that stays put while provisions come and go. A request nothing matched is
refused in terms of what the caller can change: a model no provision publishes is 404 ``model_not_found``; a
price range below every ask is 400; a model published but not served now is 503.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select

from compute.inference import endpoints
from compute.inference.refusals import GatewayError, ModelNotFound, PriceOutOfRange, ProviderUnavailable
from compute.market.matching import NoMatchError
from compute.models import Provision, aware
from compute.network import Network


class ServedModel(BaseModel):
    """A model some working server of an active provision serves."""

    id: str
    created: int = Field(description="When a provision first published the model (Unix seconds)")
    price_gwei: int = Field(description="Lowest ask per compute-unit-second among the provisions serving it")
    providers: int = Field(description="Provisions serving it")


def served_models(net: Network) -> list[ServedModel]:
    served = endpoints.available_models(net)
    published = _first_published(net, set(served))
    return [
        ServedModel(id=name, created=published[name], price_gwei=low, providers=count)
        for name, (low, count) in sorted(served.items())
    ]


def served_model(net: Network, name: str) -> ServedModel:
    found = next((m for m in served_models(net) if m.id == name), None)
    if found is None:
        raise ModelNotFound(f"The model {name!r} does not exist or no provider serves it now", field="model")
    return found


def _first_published(net: Network, names: set[str]) -> dict[str, int]:
    """When each model first appeared in an inference provision (any status, so it stays put while
    provisions come and go): the stable ``created`` of OpenAI's model object."""
    with net.store.read() as session:
        rows = session.execute(
            select(Provision.models, Provision.created_at).where(Provision.kind == "inference")
        ).all()
    first: dict[str, int] = {}
    for models, created in rows:
        for model in set(models) & names:
            stamp = int(aware(created).timestamp())
            first[model] = min(first.get(model, stamp), stamp)
    return first


def _published(net: Network, model: str) -> bool:
    """Whether a provision that is not retired lists ``model``, served now or not."""
    with net.store.read() as session:
        rows = session.scalars(
            select(Provision.models).where(Provision.kind == "inference", Provision.status != "retired")
        ).all()
    return any(model in models for models in rows)


def unmatched(net: Network, model: str, exc: NoMatchError) -> GatewayError:
    """The refusal for a request nothing matched, in terms of what the caller can change."""
    if not _published(net, model):
        return ModelNotFound(f"The model {model!r} does not exist: no provider publishes it", field="model")
    why = exc.explanation
    if why.lowest_matching_price_gwei is not None:
        field = "x-cxmpute-price-min" if why.excluded.get("price_below_min") else "x-cxmpute-price-max"
        return PriceOutOfRange(f"no provider serves {model!r} within your price range: {why.message}", field=field)
    return ProviderUnavailable(f"no provider can serve {model!r} now: {why.message}", field="model")
