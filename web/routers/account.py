"""Balances, on-chain deposits, history and withdrawals."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from compute.identity.tokens import Principal
from compute.ledger import balances, history
from compute.ledger.book import HistoryItem
from compute.ledger.funds import ChainCredit, Credited, Withdrawal, WithdrawalOut, deposit, withdraw
from compute.signer import platform_account
from web.deps import NetworkDep, SettingsDep, public, signed_in

router = APIRouter(prefix="/v1/account", tags=["account"])
account = signed_in("account")


class Balance(BaseModel):
    address: str
    user_gwei: int
    earnings_gwei: int
    stake_gwei: int


class ChainInfo(BaseModel):
    chain_id: int
    vault_address: str
    allowed_chain_ids: list[int]
    receipt_signer: str = Field(description="The platform's address that signs EIP-712 receipts (compute.receipts)")


@router.get(
    "/chain", dependencies=[Depends(public)], summary="The chain deposits and stakes go to, and the vault's address"
)
def chain(settings: SettingsDep, net: NetworkDep) -> ChainInfo:
    return ChainInfo(
        chain_id=net.chain.chain_id,
        vault_address=net.chain.vault_address,
        allowed_chain_ids=settings.allowed_chain_ids,
        receipt_signer=platform_account().address,
    )


@router.get("/balance", summary="Spendable balance, provider earnings and stake, in gwei")
def balance(net: NetworkDep, principal: Principal = Depends(account)) -> Balance:
    with net.store.read() as session:
        b = balances(session, principal.address)
    return Balance(address=principal.address, user_gwei=b["user"], earnings_gwei=b["earnings"], stake_gwei=b["stake"])


@router.post("/deposits", summary="Credit a deposit from a Deposited transaction on the vault")
def deposits(net: NetworkDep, body: ChainCredit, principal: Principal = Depends(account)) -> Credited:
    return deposit(net.store, net.chain, principal.address, body)


@router.get("/history", summary="Ledger entries touching this account, newest first")
def get_history(
    net: NetworkDep, limit: int = Query(100, ge=1, le=1000), principal: Principal = Depends(account)
) -> list[HistoryItem]:
    with net.store.read() as session:
        return history(session, principal.address, limit)


@router.post("/withdrawals", summary="Pay out balance or earnings to this account's address on chain")
def withdrawals(net: NetworkDep, body: Withdrawal, principal: Principal = Depends(account)) -> WithdrawalOut:
    return withdraw(net.store, net.chain, principal.address, body)
