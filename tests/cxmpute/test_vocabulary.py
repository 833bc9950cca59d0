"""One vocabulary: the shared error kinds, the price range and the logger names exist once."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil

import pytest
from pydantic import ValidationError

import agxnt
import compute
import cxmpute
import flows
import stxrage
import web
from compute.market.demand import PriceRange
from cxmpute import errors
from cxmpute.errors import CxmputeError

PACKAGES = (agxnt, compute, cxmpute, flows, stxrage, web)
SHARED_KINDS = {"Unauthorized", "Forbidden", "NotFound", "Conflict"}
# Programs that run inside a sandbox and read their set-up from its environment as they start: not imported here.
SANDBOX_PROGRAMS = {"compute.functions.runner"}


def _modules():
    for package in PACKAGES:
        yield package
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".migrations" in info.name or info.name.endswith("__main__") or info.name in SANDBOX_PROGRAMS:
                continue
            yield importlib.import_module(info.name)


@pytest.fixture(scope="module")
def exceptions() -> list[tuple[str, type[Exception]]]:
    """Every exception class the platform's modules define, with its qualified name."""
    return [
        (f"{module.__name__}.{name}", obj)
        for module in _modules()
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and issubclass(obj, Exception)
    ]


def test_the_shared_error_kinds_are_defined_once(exceptions):
    copies = [name for name, cls in exceptions if name.rsplit(".", 1)[1] in SHARED_KINDS]
    assert sorted(copies) == sorted(f"{errors.__name__}.{kind}" for kind in SHARED_KINDS)


def test_every_platform_error_is_of_the_one_family(exceptions):
    from flows.problems import WorkflowInvalid

    assert issubclass(WorkflowInvalid, CxmputeError) and WorkflowInvalid.status_code == 422
    strays = [
        name
        for name, cls in exceptions
        if name.endswith(("Invalid", "Refused", "Denied")) and not issubclass(cls, CxmputeError)
    ]
    # Refused while the body is read, before FastAPI's handlers apply: an HTTPException by necessity (web.limits).
    assert strays == ["web.limits.RequestRefused"]


class _Refused(CxmputeError):
    status_code = 402

    def __init__(self, explanation: dict[str, str]):
        super().__init__("refused: token abc", field="price")
        self.explanation = explanation


def test_rephrased_keeps_the_kind_and_drops_the_trail():
    try:
        try:
            raise OSError("token abc")
        except OSError as cause:
            raise _Refused({"why": "no provision"}) from cause
    except _Refused as exc:
        original, twin = exc, exc.rephrased("refused: token ***", field="steps.0.price")
    assert type(twin) is _Refused and twin.status_code == 402 and twin.explanation == {"why": "no provision"}
    assert str(twin) == twin.message == "refused: token ***" and twin.field == "steps.0.price"
    assert twin.__cause__ is None and twin.__context__ is None and twin.__traceback__ is None
    assert original.message == "refused: token abc" and original.field == "price"  # the original is untouched


def _price_models() -> list[type[PriceRange]]:
    from compute.market.demand import MatchRequest
    from compute.services.registry import ServiceIn
    from compute.training.spec import TrainingIn
    from compute.vms.models import VmCreate
    from compute.worker.jobs import JobSpec
    from web.routers.inference import DeploymentIn

    return [MatchRequest, ServiceIn, TrainingIn, VmCreate, JobSpec, DeploymentIn]


@pytest.mark.parametrize("model", _price_models(), ids=lambda m: m.__name__)
def test_every_priced_request_carries_the_one_price_range_and_its_check(model):
    assert issubclass(model, PriceRange)
    checks = model.__pydantic_decorators__.field_validators
    assert [n for n, d in checks.items() if {"price_min_gwei", "price_max_gwei"} & set(d.info.fields)] == [
        "_at_least_the_floor"
    ]
    with pytest.raises(ValidationError) as info:
        model.model_validate({"price_min_gwei": 9, "price_max_gwei": 5})
    [price] = [e for e in info.value.errors() if e["loc"] == ("price_max_gwei",)]
    assert "at least price_min_gwei (9)" in price["msg"]


def test_every_platform_logger_is_named_under_cxmpute(exceptions):  # once every module is imported
    ours = tuple(f"{p.__name__}." for p in PACKAGES if p is not cxmpute)
    strays = [name for name in logging.root.manager.loggerDict if name.startswith(ours)]
    assert strays == []
    from compute.worker import dispatch

    assert dispatch.log.name == "cxmpute.compute.worker.dispatch"
