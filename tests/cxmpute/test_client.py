"""The one platform client against the real API served by uvicorn: who it acts as, sessions kept and renewed,
errors as exceptions naming the field, an unreachable platform as one exception, never an httpx traceback."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from eth_account import Account

from cxmpute.client import AsyncPlatformClient, PlatformClient, PlatformError, PlatformUnreachable, local_address
from cxmpute.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_acts_as_the_local_wallet_made_once_in_the_data_dir(api_url, settings):
    with PlatformClient(api_url, settings=settings) as api:
        assert api.get("/v1/account/balance") is not None
        assert api.address == local_address(settings)
    key_file = settings.data_dir / "wallet.key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert Account.from_key(key_file.read_text().strip()).address == local_address(settings)
    # the same wallet next time: a second client does not make another one
    assert PlatformClient(api_url, settings=settings).address == local_address(settings)


def test_keeps_the_session_and_signs_in_again_when_it_is_revoked(api_url, settings):
    wallet = Account.create()
    with PlatformClient(api_url, wallet_key=wallet.key.hex(), settings=settings) as api:
        api.get("/v1/account/balance")
        saved = json.loads((settings.data_dir / "session.json").read_text())
        assert saved["address"] == wallet.address and saved["api"] == api_url
        assert (settings.data_dir / "session.json").stat().st_mode & 0o077 == 0
    with PlatformClient(api_url, wallet_key=wallet.key.hex(), settings=settings) as api:
        api.get("/v1/account/balance")
        assert api._token == saved["token"]  # reused, not a new sign-in
        api.post("/v1/auth/logout")  # the platform forgets the session ...
        assert api.get("/v1/account/balance") is not None  # ... and the client signs in again
        assert api._token != saved["token"]


def test_an_api_key_is_sent_as_is_and_never_replaced_by_a_sign_in(api_url, settings):
    with PlatformClient(api_url, api_key="cxk_nosuchkey_" + "x" * 43, settings=settings) as api:
        with pytest.raises(PlatformError) as refused:
            api.get("/v1/account/balance")
    assert refused.value.status_code == 401
    assert not (settings.data_dir / "session.json").exists()


def test_an_error_answer_names_the_field_and_keeps_every_problem(api_url, settings):
    with PlatformClient(api_url, settings=settings) as api:
        with pytest.raises(PlatformError) as bad:
            api.post("/v1/market/quote", json={"kind": "nonsense", "price_max_gwei": -1})
    assert bad.value.status_code == 422
    assert bad.value.field
    assert len(bad.value.errors) >= 1 and all("message" in e for e in bad.value.errors)

    with PlatformClient(api_url, settings=settings) as api:
        with pytest.raises(PlatformError) as missing:
            api.get("/v1/runs/no-such-run")
    assert missing.value.status_code == 404


def test_an_unreachable_platform_is_one_exception_naming_the_setting(settings):
    from cxmpute.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with PlatformClient(url, anonymous=True, settings=settings) as api:
        with pytest.raises(PlatformUnreachable) as down:
            api.get("/healthz")
    assert down.value.field == "CXMPUTE_API_URL" and url in down.value.message
    assert not isinstance(down.value, httpx.HTTPError)


def test_the_async_client_signs_in_and_reads_errors_the_same_way(api_url, settings):
    async def scenario() -> tuple[dict, PlatformError]:
        async with AsyncPlatformClient(api_url, wallet_key=Account.create().key.hex(), settings=settings) as api:
            balance = await api.get("/v1/account/balance")
            try:
                await api.get("/v1/leases/no-such-lease")
            except PlatformError as exc:
                return balance, exc
        raise AssertionError("a missing lease was answered")

    balance, missing = asyncio.run(scenario())
    assert balance["user_gwei"] == 0
    assert missing.status_code in (404, 422)


def test_a_spent_one_shot_body_is_not_sent_again_after_a_lapsed_session(api_url, settings):
    """A generator body is consumed by the first try: re-sending it would store an empty file. The refusal
    is reported instead; a body that can be read again (bytes) goes again, signed in anew."""
    with PlatformClient(api_url, settings=settings) as api:
        api.get("/v1/account/balance")
        api.post("/v1/auth/logout")
        with pytest.raises(PlatformError) as refused:
            api.post("/v1/storage/files", content=(chunk for chunk in [b"abc"]), params={"name": "once.txt"})
        assert refused.value.status_code == 401
        api._token = None
        api.get("/v1/account/balance")
        api.post("/v1/auth/logout")
        stored = api.post("/v1/storage/files", content=b"abc", params={"name": "again.txt"})
    assert stored
