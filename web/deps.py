"""Request dependencies shared by the routers: the settings, the compute network, a database session, the
caller's identity and what each route lets it do. Routers take them as parameters (``settings: SettingsDep``,
``net: NetworkDep``, ``session: DbSession``), never by calling the process-wide getters, so a test or an embedding
application overrides one in ``app.dependency_overrides``.

Every route declares its access with exactly one of these dependencies (:func:`owner_in`,
:func:`signed_in`, :func:`operator`, :func:`public`, :func:`job_credential`); the app refuses to start
with a route that declares none, and the declaration is published in OpenAPI as ``x-cxmpute-access``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header
from fastapi.dependencies.models import Dependant
from sqlalchemy.orm import Session

from compute.identity.tokens import OPERATOR, SCOPES, Principal, Scope, authenticate
from compute.network import Network, get_network
from cxmpute.client import local_address
from cxmpute.db import session_scope
from cxmpute.errors import CxmputeError, Forbidden, Unauthorized
from cxmpute.settings import Settings, get_settings


# Both async: a plain function would cost every request a hop to the thread pool for a lookup (the settings are
# read and the network built when the app starts).
async def settings() -> Settings:
    return get_settings()


async def network() -> Network:
    return get_network()


SettingsDep = Annotated[Settings, Depends(settings)]
NetworkDep = Annotated[Network, Depends(network)]


def db_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


# Committed before the response is sent, so a client that reads right after a write sees it.
DbSession = Annotated[Session, Depends(db_session, scope="function")]


def current_principal(authorization: str | None = Header(None)) -> Principal:
    """Who the request acts for: a session token or API key (``Authorization: Bearer ...``), else — while
    ``CXMPUTE_ALLOW_ANONYMOUS`` allows it — this machine's local wallet (the account `cxmpute up` funds and
    the CLI signs in as), so local use has a real account to pay and be paid. A credential that is present
    but invalid is always a 401, never a fall-back to anonymous."""
    settings = get_settings()
    if authorization is None:
        if not settings.allow_anonymous:
            raise Unauthorized(
                "sign in required: a session token or an API key as 'Authorization: Bearer ...'", field="authorization"
            )
        return Principal(address=local_address(settings), scopes=frozenset(SCOPES), via="anonymous")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("authorization must be 'Bearer <token>'", field="authorization")
    try:
        return authenticate(get_network().store, token.strip(), settings.resolved_operator_token())
    except CxmputeError as exc:
        exc.field = exc.field or "authorization"
        raise


def _declares(access: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(dependency: Callable[..., Any]) -> Callable[..., Any]:
        dependency.access = access  # type: ignore[attr-defined]
        return dependency

    return mark


def owner_in(scope: Scope) -> Callable[..., Awaitable[str]]:
    """A dependency: the owner whose data the request touches, once its credential holds ``scope``
    (anonymous local use holds every scope but the operator's)."""

    @_declares(f"scope:{scope}")
    async def dependency(principal: Principal = Depends(current_principal)) -> str:
        if not principal.is_account and principal.via != "anonymous":
            raise Forbidden("the operator credential acts for no account", field="authorization")
        principal.require(scope)
        return principal.address

    return dependency


def signed_in(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: a signed-in account holding ``scope`` (anonymous local use cannot: its wallet signs in)."""

    @_declares(f"scope:{scope}")
    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.is_account:
            raise Unauthorized("sign in with a wallet or use an API key", field="authorization")
        principal.require(scope)
        return principal

    return dependency


@_declares(f"scope:{OPERATOR}")
async def operator(principal: Principal = Depends(current_principal)) -> Principal:
    """The platform's operator credential (``<data dir>/operator.token`` or ``CXMPUTE_OPERATOR_TOKEN``)."""
    if principal.via != "operator":
        raise Forbidden("only the platform operator may do this", field="authorization")
    return principal


@_declares("public")
async def public() -> None:
    """Open to anyone: the route reveals nothing of an account and changes nothing an account owns."""


@_declares("job")
async def job_credential() -> None:
    """Authenticated by a credential of its own that the platform issued to one job (a rank's URL token, a
    replica's token, a provider's signature), checked by the route itself."""


def declared_access(dependant: Dependant) -> set[str]:
    """Every access declaration in a route's dependency tree."""
    found: set[str] = set()
    for sub in dependant.dependencies:
        access = getattr(sub.call, "access", None)
        if access is not None:
            found.add(access)
        found |= declared_access(sub)
    return found
