"""Sign-in message format, and withdrawals whose on-chain payout fails."""

from __future__ import annotations

import pytest
from eth_account import Account

from compute.chain import Chain
from compute.identity.siwe import SiweMessage
from compute.ledger import Acct, balance, total
from compute.ledger.funds import ChainCredit, Withdrawal, deposit, withdraw
from cxmpute.errors import CxmputeError


def test_sign_in_message_round_trips_with_and_without_statement():
    text = (
        "https://app.example wants you to sign in with your Ethereum account:\n"
        "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf\n\n\n"
        "URI: https://app.example\nVersion: 1\nChain ID: 8453\nNonce: 32891756\n"
        "Issued At: 2026-01-01T00:00:00Z\nExpiration Time: 2026-01-01T00:10:00Z"
    )
    msg = SiweMessage.parse(text)
    assert (msg.domain, msg.chain_id, msg.nonce, msg.statement) == ("app.example", 8453, "32891756", None)
    assert msg.text() == text
    again = SiweMessage.parse(msg.model_copy(update={"statement": "Sign in"}).text())
    assert again.statement == "Sign in" and again.expiration_time == msg.expiration_time


def test_failed_payout_is_reversed_in_the_ledger(net, chain, make_wallet):
    wallet = make_wallet(eth=1)
    address = wallet.address
    deposit(net.store, chain, address, ChainCredit(tx_hash=wallet.call_vault("deposit", 1000 * 10**9)))
    start = chain.w3.eth.get_balance(address)
    # A key that does not operate this vault: the vault refuses the payout on chain.
    impostor = Chain(chain.w3, chain.vault_address, Account.create())
    with pytest.raises(CxmputeError) as info:
        withdraw(net.store, impostor, address, Withdrawal(amount_gwei=400, idempotency_key="w-000001"))
    assert info.value.status_code == 502
    with net.store.read() as s:
        assert balance(s, Acct("user", address)) == 1000 and total(s) == 0
    # The real operator pays; retrying with the same key pays once.
    first = withdraw(net.store, chain, address, Withdrawal(amount_gwei=400, idempotency_key="w-000002"))
    again = withdraw(net.store, chain, address, Withdrawal(amount_gwei=400, idempotency_key="w-000002"))
    assert first.chain_tx == again.chain_tx and again.balance_gwei == 600
    assert chain.w3.eth.get_balance(address) - start == 400 * 10**9


def test_a_deposit_the_chain_forgot_and_saw_again_is_credited_once(net):
    """The embedded chain serves no snapshot or revert (tests/security/test_chain.py); were its history rewound
    anyway, the same signed deposit comes back with the same hash, and the ledger credits a hash once."""
    chain = Chain.in_process()  # a chain of its own: this test rewinds it
    w3, account = chain.w3, Account.create()
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": account.address, "value": 10**18})
    before = w3.testing.snapshot()
    tx = chain.vault.functions.deposit().build_transaction(
        {"from": account.address, "value": 10**17, "nonce": 0, "chainId": chain.chain_id, "gasPrice": w3.eth.gas_price}
    )
    raw = account.sign_transaction(tx).raw_transaction
    sent = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))["transactionHash"].to_0x_hex()
    deposit(net.store, chain, account.address, ChainCredit(tx_hash=sent))
    w3.testing.revert(before)
    with pytest.raises(CxmputeError):
        chain.events(sent, "Deposited", account.address)  # forgotten
    again = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))["transactionHash"].to_0x_hex()
    assert again == sent
    with pytest.raises(CxmputeError) as info:
        deposit(net.store, chain, account.address, ChainCredit(tx_hash=again))
    assert info.value.status_code == 409 and info.value.field == "tx_hash"
    with net.store.read() as s:
        assert balance(s, Acct("user", account.address)) == 10**8 and total(s) == 0
