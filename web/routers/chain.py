"""JSON-RPC for the in-process chain, so wallets, CLIs and provider workers on other processes can use it.

Only the embedded chain (no ``CXMPUTE_CHAIN_RPC_URL``) answers here; with a real chain configured,
clients talk to that chain's own RPC endpoint and this route is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, Field

from compute.chain.client import OPERATOR_METHODS, PUBLIC_METHODS
from cxmpute.errors import NotFound
from web.deps import NetworkDep, SettingsDep, current_principal, public

router = APIRouter(prefix="/v1/chain", tags=["account"])


class RpcRequest(BaseModel):
    jsonrpc: str = "2.0"
    id: int | str | None = None
    method: str = Field(..., min_length=1, max_length=100, description="An Ethereum JSON-RPC method")
    params: list[Any] = Field(default_factory=list)


@router.post(
    "/rpc",
    dependencies=[Depends(public)],
    summary="Ethereum JSON-RPC on the embedded development chain",
    description="Point web3 (`HTTPProvider`) or a wallet here to deposit and stake on the in-process "
    "chain. Open to anyone: " + ", ".join(sorted(PUBLIC_METHODS)) + ". The development "
    "methods (" + ", ".join(sorted(OPERATOR_METHODS)) + ") need the platform's operator "
    "credential (`Authorization: Bearer cxo_...`); any other method is a 403 naming "
    "`method`. A 404 when the platform uses an external chain.",
)
def rpc(
    settings: SettingsDep, net: NetworkDep, body: RpcRequest, authorization: str | None = Header(None)
) -> dict[str, Any]:
    if settings.chain_rpc_url:
        raise NotFound("this platform uses an external chain; send JSON-RPC to its endpoint", field="method")
    response = net.chain.rpc(
        body.method, body.params, operator=body.method in OPERATOR_METHODS and _is_operator(authorization)
    )
    response.update(jsonrpc="2.0", id=body.id)
    return _wire(response)


def _is_operator(authorization: str | None) -> bool:
    """Whether the request carries the operator credential; one that is present but invalid is a 401."""
    return authorization is not None and current_principal(authorization).via == "operator"


def _wire(value: Any) -> Any:
    """Bytes as 0x-hex, the way JSON-RPC carries them."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire(v) for v in value]
    return value
