"""Sign-In with Ethereum and API keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header

from compute.identity import siwe, tokens
from compute.identity.tokens import ApiKeyCreate, ApiKeyInfo, NewApiKey, Principal
from compute.network import Network
from web.routers._compute import network, signed_in
from web.deps import public

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.get("/nonce", dependencies=[Depends(public)], summary="A single-use nonce for an EIP-4361 sign-in message")
def nonce(net: Network = Depends(network)) -> siwe.Nonce:
    return siwe.issue_nonce(net.store)


@router.post("/verify", dependencies=[Depends(public)], summary="Exchange a signed EIP-4361 message for a session token")
def verify(body: siwe.SignInRequest, net: Network = Depends(network)) -> siwe.SessionToken:
    return siwe.sign_in(net.store, body.message, body.signature)


@router.post("/logout", status_code=204, summary="Revoke the session token of this request")
def logout(authorization: str = Header(...), _: Principal = Depends(signed_in("account")),
           net: Network = Depends(network)) -> None:
    tokens.logout(net.store, authorization.partition(" ")[2].strip())


@router.post("/keys", status_code=201, summary="Issue an API key (shown once)")
def create_key(body: ApiKeyCreate, principal: Principal = Depends(signed_in("keys")),
               net: Network = Depends(network)) -> NewApiKey:
    return tokens.create_api_key(net.store, principal, body)


@router.get("/keys", summary="This account's API keys")
def list_keys(principal: Principal = Depends(signed_in("keys")), net: Network = Depends(network)) -> list[ApiKeyInfo]:
    return tokens.list_api_keys(net.store, principal)


@router.delete("/keys/{key_id}", summary="Revoke an API key")
def revoke_key(key_id: str, principal: Principal = Depends(signed_in("keys")),
               net: Network = Depends(network)) -> ApiKeyInfo:
    return tokens.revoke_api_key(net.store, principal, key_id)
