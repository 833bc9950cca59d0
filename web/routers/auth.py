"""Sign-In with Ethereum and API keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request

from compute.identity import siwe, tokens
from compute.identity.tokens import ApiKeyCreate, ApiKeyInfo, NewApiKey, Principal
from web.deps import NetworkDep, public, signed_in

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.get(
    "/nonce",
    dependencies=[Depends(public)],
    summary="A single-use nonce for an EIP-4361 sign-in message",
    description="Expires after CXMPUTE_SIWE_NONCE_TTL_S. One client (an IPv4 address or an IPv6 /64) "
    "holds at most CXMPUTE_SIWE_NONCES_PER_CLIENT unused nonces; beyond, a 429 with "
    "Retry-After.",
    responses={429: {"description": "Too many unused nonces for this client"}},
)
def nonce(net: NetworkDep, request: Request) -> siwe.Nonce:
    return siwe.issue_nonce(net.store, siwe.client_of(request.client.host if request.client else None))


@router.post(
    "/verify",
    dependencies=[Depends(public)],
    summary="Exchange a signed EIP-4361 message for a session token",
    description="The message must follow EIP-4361 to the letter: each line in its place and each field "
    "once, the address EIP-55 checksummed, the domain and the URI's authority this "
    "server's (CXMPUTE_SIWE_DOMAIN), an Expiration Time, and a nonce from /v1/auth/nonce.",
)
def verify(net: NetworkDep, body: siwe.SignInRequest) -> siwe.SessionToken:
    return siwe.sign_in(net.store, body.message, body.signature)


@router.post("/logout", status_code=204, summary="Revoke the session token of this request")
def logout(net: NetworkDep, authorization: str = Header(...), _: Principal = Depends(signed_in("account"))) -> None:
    tokens.logout(net.store, authorization.partition(" ")[2].strip())


@router.post("/keys", status_code=201, summary="Issue an API key (shown once)")
def create_key(net: NetworkDep, body: ApiKeyCreate, principal: Principal = Depends(signed_in("keys"))) -> NewApiKey:
    return tokens.create_api_key(net.store, principal, body)


@router.get("/keys", summary="This account's API keys")
def list_keys(net: NetworkDep, principal: Principal = Depends(signed_in("keys"))) -> list[ApiKeyInfo]:
    return tokens.list_api_keys(net.store, principal)


@router.delete("/keys/{key_id}", summary="Revoke an API key")
def revoke_key(net: NetworkDep, key_id: str, principal: Principal = Depends(signed_in("keys"))) -> ApiKeyInfo:
    return tokens.revoke_api_key(net.store, principal, key_id)
