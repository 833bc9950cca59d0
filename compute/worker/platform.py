"""A provider's signed-in connection to the platform API: sign-in, registration, stake, provisions, heartbeats.

Every call goes through the platform client (:mod:`cxmpute.client`), signed in as the provider's wallet.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from compute import receipts
from compute.chain.client import platform_rpc_url, send_to_vault
from compute.providers.hardware import HardwareProfile
from cxmpute.client import (
    AsyncPlatformClient,
    PlatformClient,
    PlatformError,
    PlatformUnreachable,
)
from cxmpute.logging import get_logger
from cxmpute.settings import Settings, get_settings

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

log = get_logger(__name__)


def _as_wallet(settings: Settings) -> Settings:
    # An API key in this machine's environment may be another account's: the provider acts as its wallet only.
    return settings.model_copy(update={"api_key": None})


class Platform:
    def __init__(self, api_url: str, wallet: LocalAccount, chain_rpc_url: str | None = None):
        self.api_url = api_url.rstrip("/")
        self.wallet = wallet
        self.chain_rpc_url = chain_rpc_url
        self.client = AsyncPlatformClient(
            self.api_url, wallet_key=wallet.key.to_0x_hex(), settings=_as_wallet(get_settings())
        )
        self.domain: receipts.Domain | None = None
        self.chain_id = 0

    @property
    def address(self) -> str:
        return self.wallet.address

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of this provider's session (for callers that speak HTTP themselves)."""
        return {"Authorization": f"Bearer {self.client._token}"}

    async def close(self) -> None:
        await self.client.close()

    async def call(self, method: str, path: str, body: dict | None = None, ok: tuple[int, ...] = ()) -> Any:
        """The decoded answer; a refusal with a status in ``ok`` answers its body instead of raising."""
        try:
            return await self.client.request(method, path, json=body)
        except PlatformError as exc:
            if exc.status_code in ok:
                return exc.payload
            raise

    async def sign_in(self) -> None:
        info = await self.call("GET", "/v1/account/chain")
        self.chain_id = info["chain_id"]
        self.domain = receipts.Domain(chain_id=info["chain_id"], verifying_contract=info["vault_address"])
        await self.client.sign_in()

    async def register(self, name: str, region: str, profile: HardwareProfile) -> dict:
        issued = int(time.time())
        typed = {
            "provider": self.address,
            "name": name,
            "region": region,
            "profileHash": profile.digest(),
            "issuedAt": issued,
        }
        return await self.call(
            "POST",
            "/v1/providers",
            {
                "name": name,
                "region": region,
                "profile": profile.model_dump(),
                "issued_at": issued,
                "signature": receipts.sign(self.domain, "ProviderRegistration", typed, self.wallet),
            },
        )

    async def ensure_stake(self, stake_gwei: int) -> None:
        """Top the stake up to ``stake_gwei`` through the vault on the platform's chain."""
        have = (await self.call("GET", "/v1/account/balance"))["stake_gwei"]
        if have >= stake_gwei:
            return
        info = await self.call("GET", "/v1/account/chain")
        tx_hash = await asyncio.to_thread(
            send_to_vault,
            self.chain_rpc_url or platform_rpc_url(self.api_url),
            info["vault_address"],
            info["chain_id"],
            self.wallet,
            "stake",
            (stake_gwei - have) * 10**9,
            field="--stake-eth",
        )
        await self.call("POST", "/v1/providers/stake", {"tx_hash": tx_hash})

    def heartbeat_body(self) -> dict:
        stamp = int(time.time())
        signature = receipts.sign(self.domain, "Heartbeat", {"provider": self.address, "timestamp": stamp}, self.wallet)
        return {"provider": self.address, "timestamp": stamp, "signature": signature}

    async def heartbeat(self) -> None:
        await self.call("POST", "/v1/providers/heartbeat", self.heartbeat_body())

    def beat_forever(self, interval: float, stop: threading.Event) -> None:
        """Heartbeats from their own thread and connection, so busy jobs on the event loop never delay them.
        The signed body is the credential, so this connection needs no session."""
        with PlatformClient(self.api_url, anonymous=True) as api:
            while not stop.wait(interval):
                try:
                    api.post("/v1/providers/heartbeat", json=self.heartbeat_body())
                except PlatformError as exc:
                    # A second beat within the same second is refused as a replay, and is simply redundant.
                    if "replayed" not in exc.message:
                        log.warning("heartbeat refused: %s %s", exc.status_code, exc.message[:200])
                except PlatformUnreachable as exc:  # keep beating: the platform may be restarting
                    log.warning("heartbeat failed: %s", exc.message)
