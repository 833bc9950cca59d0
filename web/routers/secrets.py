"""The account's secrets, write-only: set, list names, delete. No route ever returns a value."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from agxnt.secrets import SecretInfo, store_for
from agxnt.secrets.store import MAX_VALUE_CHARS, MIN_VALUE_CHARS, check_name
from web.deps import SettingsDep, owner_in

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])


class SecretWrite(BaseModel):
    value: str = Field(
        ...,
        min_length=MIN_VALUE_CHARS,
        max_length=MAX_VALUE_CHARS,
        description="The secret (API key, bot token, webhook URL); stored encrypted, never returned",
    )


class SecretList(BaseModel):
    items: list[SecretInfo]
    total: int


@router.get("", response_model=SecretList, summary="Names of the account's secrets (never their values)")
def list_secrets(settings: SettingsDep, owner: str = Depends(owner_in("secrets"))) -> SecretList:
    items = store_for(settings).names(owner)
    return SecretList(items=items, total=len(items))


@router.put("/{name}", response_model=SecretInfo, summary="Create or replace a secret")
def put_secret(
    settings: SettingsDep, name: str, body: SecretWrite, owner: str = Depends(owner_in("secrets"))
) -> SecretInfo:
    return store_for(settings).set(owner, check_name(name), body.value)


@router.delete("/{name}", status_code=204, summary="Delete a secret")
def delete_secret(settings: SettingsDep, name: str, owner: str = Depends(owner_in("secrets"))) -> Response:
    store_for(settings).delete(owner, check_name(name))
    return Response(status_code=204)
