"""The embedded chain's JSON-RPC from outside: anyone reads and sends what their own key signed; the development
methods are the operator's; nothing rewrites the history the ledger has credited."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account
from web3 import Web3

from compute.chain.client import vault_abi
from tests.support.up import UpPlatform

DEV_METHODS = ["eth_sendTransaction", "eth_accounts", "evm_mine", "testing_timeTravel"]
NEVER_SERVED = [
    "evm_snapshot",
    "evm_revert",
    "evm_increaseTime",
    "evm_setNextBlockTimestamp",
    "personal_sendTransaction",
    "personal_unlockAccount",
    "personal_importRawKey",
    "eth_sign",
    "eth_signTransaction",
    "eth_signTypedData_v4",
    "miner_start",
    "debug_setHead",
    "eth_newFilter",
    "eth_newBlockFilter",
    "admin_peers",
    "txpool_content",
]
# Spellings a lax dispatcher might map onto a development method.
LOOKALIKES = [
    "ETH_SENDTRANSACTION",
    "eth_sendtransaction",
    " eth_sendTransaction",
    "eth_sendTransaction ",
    "eth_sendTransaction\n",
    "eth__sendTransaction",
    "evm_snapshot\x00",
    "Evm_Revert",
]


def rpc(platform: UpPlatform, method: str, params: list | None = None, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{platform.url}/v1/chain/rpc",
        json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []},
        headers=headers,
        timeout=30,
    )


@pytest.fixture(autouse=True)
def operator_token(platform: UpPlatform) -> None:
    """The API writes its operator token to the data dir when it first checks a credential."""
    httpx.get(f"{platform.url}/v1/account/balance", headers={"Authorization": "Bearer cxs_nothing"}, timeout=10)


def dev_account(platform: UpPlatform) -> str:
    resp = rpc(platform, "eth_accounts", headers=platform.operator)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"][0]


def refused(resp: httpx.Response) -> bool:
    return resp.status_code == 403 and resp.json()["field"] == "method" and "result" not in resp.json()


def deposit(platform: UpPlatform, account, eth: float = 1) -> tuple[str, bytes]:
    """The account's own deposit to the vault, signed here and sent raw; (tx hash, raw transaction)."""
    w3 = platform.w3()
    vault = w3.eth.contract(address=platform.chain["vault_address"], abi=vault_abi())
    tx = vault.functions.deposit().build_transaction(
        {
            "from": account.address,
            "value": int(eth * 10**18),
            "chainId": platform.chain["chain_id"],
            "nonce": w3.eth.get_transaction_count(account.address),
            "gasPrice": w3.eth.gas_price,
        }
    )
    raw = account.sign_transaction(tx).raw_transaction
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    assert receipt["status"] == 1
    return receipt["transactionHash"].to_0x_hex(), raw


def balance_gwei(platform: UpPlatform, auth: dict[str, str]) -> int:
    resp = httpx.get(f"{platform.url}/v1/account/balance", headers=auth, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["user_gwei"]


def test_anyone_reads_the_chain(platform):
    w3 = platform.w3()
    assert w3.eth.chain_id == platform.chain["chain_id"]
    vault = w3.eth.contract(address=platform.chain["vault_address"], abi=vault_abi())
    assert len(w3.eth.get_code(vault.address)) > 0
    assert Web3.is_address(vault.functions.operator().call())
    latest = w3.eth.get_block("latest")
    assert w3.eth.get_block(latest["hash"])["number"] == latest["number"] == w3.eth.block_number
    assert w3.eth.gas_price > 0 and w3.eth.get_balance(Account.create().address) == 0
    assert w3.eth.get_transaction_count(vault.address) >= 0 and w3.eth.fee_history(1, "latest")
    assert w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": vault.address}) is not None


@pytest.mark.parametrize("method", DEV_METHODS)
def test_development_methods_need_the_operator(platform, method):
    stranger = Account.create().address
    params = {
        "eth_sendTransaction": [{"from": dev_account(platform), "to": stranger, "value": hex(10**18)}],
        "testing_timeTravel": [2**40],
    }.get(method, [])
    _, session = platform.new_user()
    for headers in (None, session, platform.api_key(session, ["account", "keys"])):
        assert refused(rpc(platform, method, params, headers)), (method, headers)
    assert platform.w3().eth.get_balance(stranger) == 0


def test_send_transaction_from_the_dev_account_is_refused_to_everyone_but_the_operator(platform):
    """The issue's case: an unlocked development account paid whoever asked."""
    thief = Account.create().address
    payment = [{"from": dev_account(platform), "to": thief, "value": hex(5 * 10**18)}]
    assert refused(rpc(platform, "eth_sendTransaction", payment))
    for forged in (
        "Bearer cxo_" + "x" * 43,
        platform.operator_token,
        f"Basic {platform.operator_token}",
        f"Bearer {platform.operator_token}x",
        f"Bearer {platform.operator_token[:-1]}",
    ):
        resp = rpc(platform, "eth_sendTransaction", payment, {"Authorization": forged})
        assert resp.status_code == 401 and "result" not in resp.json(), forged
    assert refused(rpc(platform, "eth_sendTransaction", payment, {"X-Operator": platform.operator_token}))
    assert platform.w3().eth.get_balance(thief) == 0
    platform.fund(thief, 1)  # the operator may
    assert platform.w3().eth.get_balance(thief) == 10**18


@pytest.mark.parametrize("method", NEVER_SERVED + LOOKALIKES)
def test_other_methods_are_refused_even_to_the_operator(platform, method):
    for headers in (None, platform.operator):
        assert refused(rpc(platform, method, [], headers)), (method, headers)


def test_operator_mines_but_cannot_rewrite_history(platform):
    w3 = platform.w3(platform.operator)
    before = w3.eth.block_number
    assert rpc(platform, "evm_mine", [1], platform.operator).status_code == 200
    assert w3.eth.block_number == before + 1
    assert refused(rpc(platform, "evm_snapshot", [], platform.operator))
    assert refused(rpc(platform, "evm_revert", [0], platform.operator))


def test_deposit_revert_and_deposit_again_cannot_credit_twice(platform):
    """The issue's double credit: deposit, snapshot, credit, revert, the same deposit again. No caller can take
    the snapshot or revert, the chain refuses the same signed transaction twice, and the ledger credits a
    transaction hash once, so the balance is the one deposit the vault holds."""
    account, auth = platform.new_user()
    platform.fund(account.address, 3)
    vault = platform.chain["vault_address"]
    held = platform.w3().eth.get_balance(vault)
    key = platform.api_key(auth, ["account"])
    for headers in (None, auth, key, platform.operator):
        assert refused(rpc(platform, "evm_snapshot", [], headers))
    tx_hash, raw = deposit(platform, account, 1)
    credit = httpx.post(f"{platform.url}/v1/account/deposits", json={"tx_hash": tx_hash}, headers=auth, timeout=30)
    assert credit.status_code == 200 and credit.json()["amount_gwei"] == 10**9, credit.text
    for headers in (None, auth, key, platform.operator):
        for snapshot in (0, 1, "0x0", "0x1"):
            assert refused(rpc(platform, "evm_revert", [snapshot], headers))
    resent = rpc(platform, "eth_sendRawTransaction", [raw.to_0x_hex()])
    assert resent.status_code == 400 and resent.json()["field"] == "params", resent.text
    again = httpx.post(f"{platform.url}/v1/account/deposits", json={"tx_hash": tx_hash}, headers=auth, timeout=30)
    assert again.status_code == 409 and again.json()["field"] == "tx_hash"
    assert balance_gwei(platform, auth) == 10**9
    assert platform.w3().eth.get_balance(vault) == held + 10**18


def test_a_user_deposits_with_a_signed_raw_transaction(platform):
    account, auth = platform.new_user()
    platform.fund(account.address, 2)
    tx_hash, _ = deposit(platform, account, 0.5)
    credit = httpx.post(f"{platform.url}/v1/account/deposits", json={"tx_hash": tx_hash}, headers=auth, timeout=30)
    assert credit.status_code == 200 and balance_gwei(platform, auth) == 5 * 10**8, credit.text
    receipt = platform.w3().eth.get_transaction_receipt(tx_hash)
    assert receipt["from"] == account.address and platform.w3().eth.get_transaction(tx_hash)["value"] == 5 * 10**17


def test_raw_transactions_without_funds_or_malformed_are_refused_naming_params(platform):
    w3 = platform.w3()
    broke = Account.create()
    tx = {
        "to": broke.address,
        "value": 10**18,
        "gas": 21000,
        "gasPrice": w3.eth.gas_price,
        "nonce": 0,
        "chainId": platform.chain["chain_id"],
    }
    unfunded = rpc(platform, "eth_sendRawTransaction", [broke.sign_transaction(tx).raw_transaction.to_0x_hex()])
    assert unfunded.status_code == 400 and unfunded.json()["field"] == "params", unfunded.text
    for params in (["0x1234"], ["not hex"], [], [None], [{"to": broke.address}]):
        resp = rpc(platform, "eth_sendRawTransaction", params)
        assert resp.status_code == 400 and resp.json()["field"] == "params", (params, resp.text)
    for method, params in (
        ("eth_getBalance", ["nothex", "latest"]),
        ("eth_getBalance", []),
        ("eth_getBlockByNumber", ["tomorrow", False]),
        ("eth_call", [{"to": 7}, "latest"]),
    ):
        resp = rpc(platform, method, params)
        assert resp.status_code == 400 and resp.json()["field"] == "params", (method, resp.text)


def test_a_reverting_call_is_a_json_rpc_error(platform):
    w3 = platform.w3()
    vault = w3.eth.contract(address=platform.chain["vault_address"], abi=vault_abi())
    # Only the vault's operator may pay out: from anyone else the call reverts.
    data = vault.functions.pay(Account.create().address, 1, b"\0" * 32)._encode_transaction_data()
    resp = rpc(platform, "eth_call", [{"to": vault.address, "data": data}, "latest"])
    assert resp.status_code == 200 and resp.json()["error"]["code"] == 3 and "result" not in resp.json()


def test_requests_that_are_not_one_json_rpc_call_are_refused(platform):
    url = f"{platform.url}/v1/chain/rpc"
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction", "params": []}]
    assert httpx.post(url, json=batch, timeout=10).status_code == 422
    assert httpx.post(url, json={"method": "eth_sendTransaction" * 10}, timeout=10).status_code == 422
    assert httpx.post(url, json={"method": "eth_chainId", "params": {"x": 1}}, timeout=10).status_code == 422
    assert httpx.post(url, content=b"{", headers={"Content-Type": "application/json"}, timeout=10).status_code == 422
